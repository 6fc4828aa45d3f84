"""Staff forms (WTForms with Flask-WTF's CSRF). Participant entry forms are rendered from the
protocol instead, since their items come from a file, not from code."""

from __future__ import annotations

import secrets
from zoneinfo import available_timezones

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateTimeField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, InputRequired, Length, Optional, Regexp, ValidationError

from ..governance.passwords import MIN_PASSWORD_LENGTH
from ..i18n import DEFAULT_LANGUAGE, LANGUAGE_NAMES, LANGUAGES
from ..vocabulary import (
    CALL_OUTCOMES,
    CHANGE_REQUEST_LABELS,
    FOLLOW_UP_LABELS,
    SEX_LABELS,
    SOURCE_LABELS,
    WITHDRAWAL_LABELS,
    ChangeRequestType,
    DecidedBy,
    ReviewState,
    Role,
    Sex,
    Source,
    WithdrawalReason,
)

CLOCK = Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", message="Use a time like 08:00.")
REASON = [DataRequired(message="A reason is required."), Length(max=2000)]
SOURCES = [(source.value, SOURCE_LABELS[source]) for source in Source.proxies()]
ROLES = [(role.value, role.value) for role in Role]


def new_action_key() -> str:
    return secrets.token_hex(16)


class BaseForm(FlaskForm):
    """Every staff form: CSRF-protected, and stripped of surrounding spaces."""

    class Meta:
        def bind_field(self, form, unbound_field, options):
            filters = list(unbound_field.kwargs.get("filters", []))
            if unbound_field.field_class in (StringField, TextAreaField, EmailField):
                filters.append(lambda value: value.strip() if isinstance(value, str) else value)
            return unbound_field.bind(form=form, filters=filters, **options)


class LoginForm(BaseForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])
    next = HiddenField()


class CodeForm(BaseForm):
    code = StringField(
        "Code from your authenticator app (or a recovery code)",
        validators=[DataRequired(message="Type the code."), Length(max=32)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "text"},
    )


class PasswordForm(BaseForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=1000)])
    new = PasswordField(
        "New password",
        validators=[
            DataRequired(),
            Length(min=MIN_PASSWORD_LENGTH, max=1000, message=f"At least {MIN_PASSWORD_LENGTH} characters."),
        ],
    )
    confirm = PasswordField("New password again", validators=[DataRequired()])

    def validate_confirm(self, field):
        if field.data != self.new.data:
            raise ValidationError("The two new passwords are not the same.")


class OnceForm(BaseForm):
    """A staff form whose action must happen once: it carries a key (see ``diary.actions``)."""

    action_key = HiddenField(default=new_action_key)

    @property
    def posted_key(self) -> str | None:
        """The key the browser sent back (None if missing: the default only seeds new pages)."""
        return self.action_key.raw_data[0] if self.action_key.raw_data else None


class EnrolForm(OnceForm):
    site = SelectField("Site", validators=[DataRequired()])
    timezone = StringField("Time zone (IANA name)", validators=[DataRequired(), Length(max=64)])
    email = EmailField("Email for reminders", validators=[Optional(), Email(), Length(max=254)])
    phone = StringField(
        "Phone (optional)",
        validators=[
            Optional(),
            Length(max=40),
            Regexp(r"^[0-9 +().-]{5,40}$", message="Digits, spaces and + ( ) - only."),
        ],
    )
    reminder_from = StringField("Reminders from", default="08:00", validators=[Optional(), CLOCK])
    reminder_until = StringField("Reminders until", default="21:00", validators=[Optional(), CLOCK])
    language = SelectField(
        "Language of the diary and reminders",
        default=DEFAULT_LANGUAGE,
        choices=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
    )
    sex = SelectField(
        "Sex", default=Sex.UNKNOWN.value, choices=[(str(code), label) for code, label in SEX_LABELS.items()]
    )
    birth_year = StringField(
        "Year of birth (optional)",
        validators=[Optional(), Regexp(r"^(19|20)[0-9]{2}$", message="A year such as 1968.")],
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )
    tell_after_unblinding = BooleanField(
        "They want to know, once the study is unblinded, which study drug they had when"
    )

    def validate_timezone(self, field):
        if field.data not in available_timezones():
            raise ValidationError("Choose a time zone name such as America/New_York.")

    def validate_reminder_until(self, field):
        if self.reminder_from.data and field.data and field.data == self.reminder_from.data:
            raise ValidationError("The reminder hours must not start and end at the same time.")


class LocalDateTimeField(DateTimeField):
    """A date and time on the participant's clock, typed as the staff pages show times:
    2026-11-25 14:30 (24-hour). The browser's own date-time picker would show mm/dd/yyyy with
    AM/PM in a US browser while the pages say 14:30; one convention avoids misreading.
    The ISO form with a T (2026-11-25T14:30) is accepted too."""

    FORMATS = ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]

    def __init__(self, label=None, validators=None, **kwargs):
        kwargs.setdefault(
            "render_kw",
            {
                "placeholder": "2026-11-25 14:30",
                "autocomplete": "off",
                "pattern": r"\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}",
            },
        )
        super().__init__(label, validators, format=self.FORMATS, **kwargs)

    def process_formdata(self, valuelist):
        if valuelist:
            valuelist = [" ".join(valuelist).strip()]
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError("Give the date and time as 2026-11-25 14:30 (24-hour clock).") from None


class DoseForm(OnceForm):
    start = LocalDateTimeField(
        "Infusion start (participant's local time, YYYY-MM-DD HH:MM, 24-hour)",
        validators=[InputRequired(message="Give the date and time the infusion started.")],
    )
    reason = TextAreaField("Reason for the correction", validators=[Optional(), Length(max=2000)])


class ReasonForm(OnceForm):
    reason = TextAreaField("Reason", validators=REASON)


class ContactForm(BaseForm):
    email = EmailField("Email for reminders", validators=[Optional(), Email(), Length(max=254)])
    phone = StringField("Phone", validators=[Optional(), Length(max=40)])
    reason = TextAreaField("Why do they change?", validators=REASON)


class WithdrawForm(ReasonForm):
    category = SelectField(
        "Why does the participant leave?",
        choices=[("", "Choose…")] + [(w.value, WITHDRAWAL_LABELS[w]) for w in WithdrawalReason],
        validators=[DataRequired(message="Choose why the participant leaves.")],
    )
    decided_by = SelectField(
        "Who decided?",
        choices=[(d.value, d.value.capitalize()) for d in DecidedBy],
        default=DecidedBy.PARTICIPANT.value,
    )


class AcknowledgeForm(BaseForm):
    note = TextAreaField("Note", validators=[DataRequired(message="A note is required."), Length(max=2000)])
    state = SelectField(
        "Review",
        choices=[(state.value, state.value) for state in ReviewState if state is not ReviewState.NEW],
        default=ReviewState.REVIEWED.value,
    )


class FollowUpForm(BaseForm):
    outcome = SelectField("How did it go?", choices=[(o.value, FOLLOW_UP_LABELS[o]) for o in CALL_OUTCOMES])
    note = TextAreaField("Note", validators=[DataRequired(message="A note is required."), Length(max=2000)])


class CodeBreakForm(BaseForm):
    code = StringField("Participant code", validators=[DataRequired(), Length(max=40)])
    reason = TextAreaField("Why the code must be broken now", validators=REASON)
    confirm = StringField("Type BREAK to confirm", validators=[DataRequired()])

    def validate_confirm(self, field):
        if field.data.strip() != "BREAK":
            raise ValidationError("Type BREAK in capitals to confirm.")


class CorrectionForm(BaseForm):
    item = SelectField("Item", validators=[DataRequired()])
    value = StringField("New value", validators=[Length(max=2000)])
    reason = TextAreaField("Reason for the correction", validators=REASON)


class ProxyEntryForm(BaseForm):
    source = SelectField("Source", choices=SOURCES, validators=[DataRequired()])
    collected = LocalDateTimeField(
        "When the answers were given (participant's local time, YYYY-MM-DD HH:MM, 24-hour)",
        validators=[InputRequired(message="Give the date and time the answers were given.")],
    )
    reason = TextAreaField("Reason", validators=REASON)


class ChangeRequestForm(BaseForm):
    item = SelectField("Item", validators=[DataRequired()])
    value = StringField("Proposed value", validators=[Length(max=2000)])
    kind = SelectField(
        "What kind of error",
        choices=[("", "Choose…")] + [(kind.value, CHANGE_REQUEST_LABELS[kind]) for kind in ChangeRequestType],
        validators=[DataRequired(message="Choose what kind of error it is.")],
    )
    source = StringField(
        "Source of the correct value (e.g. phone call with the participant)",
        validators=[DataRequired(message="Name the source."), Length(max=500)],
    )
    source_at = LocalDateTimeField(
        "When (participant's local time, YYYY-MM-DD HH:MM, 24-hour)",
        validators=[InputRequired(message="Give the date and time of the source.")],
    )
    reason = TextAreaField("Why the value should change", validators=REASON)


class SignForm(BaseForm):
    """An electronic signature's two components, typed again at the moment of signing."""

    password = PasswordField("Your password", validators=[DataRequired(), Length(max=1000)])
    code = StringField(
        "Code from your authenticator app",
        validators=[DataRequired(), Length(max=20)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )


class DecisionForm(SignForm):
    decision = SelectField("Decision", choices=[("approve", "Approve and apply"), ("reject", "Reject")])
    note = TextAreaField("Note (required to reject)", validators=[Length(max=2000)])


class SignPeriodForm(SignForm):
    kind = SelectField("Sign-off", choices=[("signed", "Sign"), ("waived", "Waive the signature")])
    reason = TextAreaField("Reason (required to waive)", validators=[Length(max=2000)])


class DiscontinueForm(WithdrawForm):
    """The same questions as a withdrawal; only the consequence differs (the diary continues)."""

    category = SelectField(
        "Why do the infusions stop?",
        choices=[("", "Choose…")] + [(w.value, WITHDRAWAL_LABELS[w]) for w in WithdrawalReason],
        validators=[DataRequired(message="Choose why the infusions stop.")],
    )

    decided_by = SelectField(
        "Who decided?",
        choices=[(d.value, d.value.capitalize()) for d in DecidedBy],
        default=DecidedBy.INVESTIGATOR.value,
    )


class LockForm(BaseForm):
    reason = TextAreaField("Reason", validators=REASON)


class AuditReviewForm(BaseForm):
    check = HiddenField(validators=[DataRequired()])
    note = TextAreaField("Review note", validators=[DataRequired(message="A note is required."), Length(max=2000)])


class UserForm(BaseForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=254)])
    role = SelectField("Role", choices=ROLES)
    password = PasswordField(
        "Initial password",
        validators=[
            DataRequired(),
            Length(min=MIN_PASSWORD_LENGTH, max=1000, message=f"At least {MIN_PASSWORD_LENGTH} characters."),
        ],
    )


class UserChangeForm(BaseForm):
    role = SelectField("Role", choices=ROLES)
    active = BooleanField("Active")
    reason = StringField("Reason", validators=[Optional(), Length(max=2000)])


class RandomizationForm(BaseForm):
    file = FileField("Randomization list (CSV: site, position, sequence)", validators=[FileRequired()])


class ArchiveForm(BaseForm):
    site = SelectField("Site", validators=[DataRequired(message="Choose a site.")])


class ConfirmForm(BaseForm):
    """A button with nothing to fill in but the CSRF token."""


class CodingForm(BaseForm):
    term = StringField("Dictionary term", validators=[DataRequired(message="Give the term."), Length(max=200)])
    reason = StringField("Why this term", validators=[DataRequired(message="Say why."), Length(max=2000)])
    # The term the page showed (empty: not coded), so a coding made meanwhile is not overwritten.
    seen = HiddenField(validators=[Length(max=200)])


class PreviewForm(BaseForm):
    """The calendar preview's question: read from the query string (a GET changes nothing)."""

    class Meta(BaseForm.Meta):
        csrf = False

    timezone = StringField(
        "Time zone (IANA name)", default="America/New_York", validators=[DataRequired(), Length(max=64)]
    )
    start = LocalDateTimeField(
        "First infusion or day 1 (local time, YYYY-MM-DD HH:MM, 24-hour)",
        validators=[InputRequired(message="Give the date and time of the first anchor.")],
    )

    def validate_timezone(self, field):
        if field.data not in available_timezones():
            raise ValidationError("Not a time zone: give an IANA name such as Europe/Madrid.")


class AmendmentForm(BaseForm):
    """A proposed amendment: the whole new protocol text, why, and (to propose, not to check)
    the admin's password and second factor typed again."""

    text = TextAreaField(
        "The amended protocol (the whole YAML file)",
        validators=[DataRequired(message="Paste the whole amended protocol."), Length(max=200_000)],
    )
    reason = TextAreaField(
        "Reason (the ethics committee's approval, or why)", validators=[Optional(), Length(max=2000)]
    )
    password = PasswordField("Your password", validators=[Optional(), Length(max=1000)])
    code = StringField(
        "Code from your authenticator app",
        validators=[Optional(), Length(max=20)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )


class ApproveAmendmentForm(SignForm):
    """A second person's approval: their password and second factor typed again."""


class WithdrawAmendmentForm(BaseForm):
    reason = TextAreaField(
        "Why it is withdrawn", validators=[DataRequired(message="A reason is required."), Length(max=2000)]
    )
