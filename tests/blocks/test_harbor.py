"""blocks/harbor.py: the shared secret and its constant-time check."""

import pytest
from pydantic import ValidationError

from blocks.harbor import HarborWebhook


def test_accepts_only_the_exact_header():
    block = HarborWebhook(auth_header="Bearer 0123456789abcdef")
    assert block.accepts("Bearer 0123456789abcdef")
    assert not block.accepts("Bearer 0123456789abcdeF")
    assert not block.accepts(None)
    assert not block.accepts("")


def test_short_secrets_are_refused():
    with pytest.raises(ValidationError, match="at least 16"):
        HarborWebhook(auth_header="short")


def test_secret_is_not_in_repr():
    assert "0123456789abcdef" not in repr(HarborWebhook(auth_header="Bearer 0123456789abcdef"))
