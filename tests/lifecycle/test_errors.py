"""lifecycle/errors.py: the reason enumeration, and the README's table of it."""

from pathlib import Path

from lifecycle import errors

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_reason_code_is_in_the_readme_table_with_its_status():
    for cls in errors.all_error_classes():
        assert f"| `{cls.code}` | {cls.status_code} |" in README, cls.code


def test_details_default_to_explanation_and_fix():
    exc = errors.UnknownKid()
    assert exc.detail == f"{exc.explanation} {exc.fix}"
    assert errors.UnknownKid("custom").detail == "custom"
    assert "custom" in repr(errors.UnknownKid("custom"))


def test_statuses_follow_the_spec():
    assert errors.MalformedBody.status_code == 400
    assert errors.SignedInstallRequired.status_code == 401
    assert errors.TenantHostNotAllowed.status_code == 403
    assert errors.BodyTooLarge.status_code == 413
    assert errors.UnsupportedMediaType.status_code == 415
    assert errors.KeyServerUnavailable.status_code == 503
