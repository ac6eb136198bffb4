"""Strings from servers, files, flags and URLs: shown as plain text, secrets masked."""

from tui.untrusted import Redactor, count, mask_url, numbers_only, one_line, visible


def test_control_characters_become_visible():
    shown = visible("m\x1b]0;pwned\x07\x1b[31m\x9b2J\x7f\n")
    assert shown == "m␛]0;pwned␇␛[31m\\x9b2J␡␊"
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown)


def test_markup_stays_text():
    assert visible("bad[/] [reverse]x") == "bad[/] [reverse]x"


def test_one_line_flattens_caps_and_shows_controls():
    assert one_line("a\n  b\tc\x1b[2J", 100) == "a b c␛[2J"
    assert one_line("x" * 300, 10) == "x" * 9 + "…"


def test_url_password_is_masked():
    assert mask_url("http://user:hunter2@host:8080/v1") == "http://user:***@host:8080/v1"
    assert mask_url("http://host:8080") == "http://host:8080"
    assert mask_url("http://[::1") == "http://[::1"  # unparseable: left as it is, never a traceback


def test_redactor_masks_every_secret_and_ignores_tiny_ones():
    redact = Redactor("sk-secret-123", "hunter2", None, "ab")
    assert redact("invalid key Bearer sk-secret-123 for hunter2 ab") == "invalid key Bearer *** for *** ab"
    assert redact(None) is None


def test_server_numbers_are_checked():
    assert [count(v) for v in (3, 2.9, -1, float("nan"), float("inf"), "7", True, None)] == \
        [3, 2, None, None, None, None, None, None]
    assert numbers_only({"a": 1.5, "b": "x", "c": float("nan"), "d": [1]}) == {"a": 1.5}
