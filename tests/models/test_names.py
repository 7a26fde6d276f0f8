"""The torch-free tables of models/names.py agree with the torch registries they stand in for."""
from moebench.models.activations import ACTIVATIONS
from moebench.models.backends import BACKENDS
from moebench.models.names import ACTIVATION_SHAPES, BACKEND_NAMES, ROUTER_TRAITS, cpu_without_torch
from moebench.models.routers import ROUTERS


def test_every_router_has_its_traits_and_they_match_the_class():
    assert ROUTER_TRAITS.names() == ROUTERS.names()
    for name, cls in ROUTERS.items():
        assert ROUTER_TRAITS[name].token_choice == cls.token_choice, name
        assert ROUTER_TRAITS[name].scored == cls.scored, name


def test_backend_and_activation_names_match():
    assert BACKEND_NAMES.names() == BACKENDS.names()
    assert ACTIVATION_SHAPES.names() == ACTIVATIONS.names()
    assert {n: a.n_matrices for n, a in ACTIVATIONS.items()} == {"gelu": 2, "relu": 2, "swiglu": 3}


def test_only_cpu_or_auto_without_a_driver_skips_torch(monkeypatch):
    import moebench.models.names as names

    monkeypatch.setattr(names, "gpu_possible", lambda: True)
    assert cpu_without_torch("cpu") and not cpu_without_torch("auto") and not cpu_without_torch("cuda")
    monkeypatch.setattr(names, "gpu_possible", lambda: False)
    assert cpu_without_torch("auto")
