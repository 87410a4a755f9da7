import pytest

from render import TARGETS, RenderError, build


@pytest.fixture(scope="session")
def rendered():
    """kustomize build output per target, built once per session."""
    cache: dict[str, str] = {}

    def get(target: str) -> str:
        if target not in cache:
            try:
                cache[target] = build(TARGETS[target])
            except RenderError as e:
                pytest.fail(str(e), pytrace=False)
        return cache[target]

    return get
