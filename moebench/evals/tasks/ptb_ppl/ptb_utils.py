"""ptb_ppl: Penn Treebank test split (Mikolov's ptb.test.txt) scored with loglikelihood_rolling.

Each document is a block of consecutive test lines (see moebench.evals.harness.PTB_LINES_PER_DOC). Word counts
follow the standard PTB LM convention: whitespace words plus one <eos> per line, 82,430 for the whole test set,
so word_perplexity over all documents is comparable with published PTB word-level perplexities.
"""


def doc_to_target(doc):
    return doc["text"]


def process_results(doc, results):
    (loglikelihood,) = results
    text = doc["text"]
    words = len(text.split()) + text.count("\n")
    n_bytes = len(text.encode("utf-8"))
    return {
        "word_perplexity": (loglikelihood, words),
        "byte_perplexity": (loglikelihood, n_bytes),
        "bits_per_byte": (loglikelihood, n_bytes),
    }
