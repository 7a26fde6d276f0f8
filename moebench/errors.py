"""Error types that decide the exit code: UserError -> 2, anything else -> 1."""
import difflib
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str) -> str:
    """A user's string (a key, a name) shown on one line: control characters as escapes (a newline as \\n)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class UserError(Exception):
    """A problem the user can fix (bad suite, missing file, unknown name). Printed without a traceback."""


class SuiteValidationError(UserError):
    """Every problem found in a suite at once; each message starts with its dotted path."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        n = len(self.problems)
        if n == 1:  # one problem, one line
            return f"suite is invalid: {printable(self.problems[0])}"
        return f"suite is invalid ({n} problems):" + "".join(f"\n  - {printable(p)}" for p in self.problems)


class RunFailed(Exception):
    """A run stopped on purpose (NaN/inf loss, diverged): recorded in its summary, the suite goes on."""

    def __init__(self, step: int, reason: str):
        self.step, self.reason = step, reason
        super().__init__(f"step {step}: {reason}")


def did_you_mean(word, options) -> str:
    """' (did you mean 'x'?)' for the closest option, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
