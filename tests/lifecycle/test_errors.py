"""lifecycle/errors.py: the reason enumeration, and the README's table of it."""

from pathlib import Path

from lifecycle import errors

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_reason_code_is_in_the_readme_table_with_its_status_and_texts():
    for cls in errors.all_error_classes():
        note = f" (answered as `{cls.code}`)" if cls.reason else ""
        row = f"| `{errors.reason_of(cls)}` | {cls.status_code} | {cls.explanation} {cls.fix}{note} |"
        assert row in README, errors.reason_of(cls)


def test_a_precise_audit_reason_keeps_the_answer_spec_code():
    exc = errors.SignedInstallHeaderMissing()
    assert (exc.code, exc.audit_code, exc.status_code) == (
        "signed_install_required",
        "authorization_header_missing",
        401,
    )
    assert errors.REASONS["hs256_lifecycle_token"] is errors.SignedInstallStaleDescriptor


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
