"""Secrets never reach a record: redaction by the shape of a value, and by its name.

One place for every text reprobook writes to MLflow, to reports and to logs
(the environment, params, errors, diffs, executed notebooks). Three layers:

- **shape** (:func:`redact_text`): what a credential looks like wherever it
  appears -- connection-string keys (``AccountKey=``, ``SharedAccessSignature=``,
  ``Password=``), URL user-info of any form, ``token``/``sig``/``key`` query
  parameters, well-known token prefixes (``ghp_``, ``xoxb-``, ``AKIA``,
  ``sk-``, ...), JWTs, private-key blocks, quoted ``api_key = "..."``
  assignments;
- **name** (:func:`redact_env`, :func:`redact_params`): the value of a variable
  or params key whose name says it is a credential (``*_TOKEN``, ``password``);
- **known values**: the values found by name (in ``os.environ`` and in params)
  are replaced wherever they appear again, in any text.

The shapes are tight on purpose: hex digests, run ids, commit hashes, paths,
dotted class names and base64 image data never match. Only text is redacted,
never binary data (:func:`redact_tree` skips image payloads of notebooks).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REDACTED = "[REDACTED]"

# ------------------------------------------------------------------ names

SECRET_NAME = re.compile(
    r"KEY|SECRET|TOKEN|PASSW|PWD|CREDENTIAL|AUTH(?!OR)|PRIVATE|SESSION|COOKIE|SIGNATURE", re.IGNORECASE
)
"""Environment variable names whose whole value is redacted (``GIT_AUTHOR_*`` is not one)."""
NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})
"""The working directory, not a password."""

SECRET_KEY = re.compile(
    r"(?:^|[_\-.])(?:password|passwd|pwd|secret|token|api_?key|apikey|access_?key|secret_?key|private_?key"
    r"|account_?key|client_?secret|auth_?token|credentials?|connection_?string|sas_?token)$",
    re.IGNORECASE,
)
"""A params key whose last part names a credential (``features.api_token``); ``max_tokens`` is not one."""

_PATHLIKE = re.compile(r"^(?:[/~.]|[A-Za-z]:[\\/])")

# ------------------------------------------------------------------ shapes

_START = r"(?<![A-Za-z0-9_\-+/])"
"""A token starts a word: not inside base64, a hex digest or a longer identifier."""
_END = r"(?![A-Za-z0-9])"


@dataclass(frozen=True)
class Rule:
    """One secret shape: what it is, the pattern, how a match is replaced."""

    kind: str
    pattern: re.Pattern[str]
    replace: str | Callable[[re.Match[str]], str]
    hints: tuple[str, ...]
    """Lower-case substrings, one of which any match contains: the pattern runs only where one is present."""
    gate: re.Pattern[str] | None = None
    """A cheap pattern any match also contains (the full pattern is slow on long texts)."""

    def applies(self, text: str, lowered: str) -> bool:
        return any(hint in lowered for hint in self.hints) and (self.gate is None or bool(self.gate.search(text)))

    def replacement(self, match: re.Match[str]) -> str:
        return self.replace(match) if callable(self.replace) else self.replace


def _rule(kind: str, hints: Iterable[str], pattern: str, replace=REDACTED, flags: int = 0, gate: str = "") -> Rule:
    return Rule(kind, re.compile(pattern, flags), replace, tuple(hints), re.compile(gate) if gate else None)


def _keep(group: str) -> Callable[[re.Match[str]], str]:
    """Keep the named prefix (``AccountKey=``), redact the rest of the match."""
    return lambda m: m.group(group) + REDACTED


def _keep_pem(m: re.Match[str]) -> str:
    return f"-----BEGIN {m.group('kind')}-----{REDACTED}-----END {m.group('kind')}-----"


def _unquoted_secret(m: re.Match[str]) -> str:
    value = m.group("value")
    if value.lower() in ("null", "none", "true", "false") or value == REDACTED:
        return m.group(0)
    # `api_key = API_KEY` or `password: SecretStr` names a variable or a type, not a value.
    if re.fullmatch(r"[A-Za-z_]+(?:\.[A-Za-z_]+)*", value) and not value.islower():
        return m.group(0)
    return m.group("key") + REDACTED


_CREDENTIAL_WORD = (
    r"(?:password|passwd|pwd|secret|token|api_?key|apikey|access_?key|private_?key"
    r"|account_?key|client_?secret)"
)
_CREDENTIAL_HINTS = ("passw", "pwd", "secret", "token", "key")
_CONNECTION_VALUE = r"(?:\{[^}]*\}|\"[^\"]*\"|'[^']*'|[^;\s\"']+)"
"""A value in a connection string: ``{braced}`` (ODBC), quoted, or up to the next ``;``."""
_NOT_DONE = r"(?!\[REDACTED\])"

RULES: list[Rule] = [
    _rule(
        "private key", ["private key"],
        r"-----BEGIN (?P<kind>(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END (?P=kind)-----|\Z)",
        _keep_pem, re.DOTALL,
    ),
    # Azure: the whole SAS (it has its own `&` and `=`), the account or shared-access key.
    _rule(
        "connection string key", ["accountkey", "sharedaccesskey", "sharedaccesssignature"],
        r"(?P<key>(?<![A-Za-z0-9])(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*)" + _NOT_DONE
        + r"(?:\"[^\"]*\"|'[^']*'|[^;\s\"']+)",
        _keep("key"), re.IGNORECASE,
    ),
    # ODBC / ADO.NET / JDBC `;Password=...` -- a semicolon beside it, so not `f(password=x)` in code.
    _rule(
        "connection string password", ["passw", "pwd"],
        r"(?P<key>(?<=;)\s*(?:Password|Pwd|Passwd)\s*=\s*)" + _NOT_DONE + _CONNECTION_VALUE,
        _keep("key"), re.IGNORECASE,
    ),
    _rule(
        "connection string password", ["passw", "pwd"],
        r"(?P<key>(?<![\w.])(?:Password|Pwd|Passwd)\s*=\s*)" + _NOT_DONE + _CONNECTION_VALUE + "(?=;)",
        _keep("key"), re.IGNORECASE,
    ),
    # scheme://user:password@host: the password may hold `/`, `:` or `@`; a user alone (a token) too.
    _rule(
        "URL credentials", ["://"],
        r"(?P<key>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://)(?!\[REDACTED\]@)"
        r"(?:[^\s/?#@:'\"<>]+(?::[^\s'\"<>]*)?|:[^\s'\"<>]+)@(?=[A-Za-z0-9\[])",
        lambda m: f"{m.group('key')}{REDACTED}@",
    ),
    _rule(
        "Slack webhook", ["hooks.slack.com"],
        r"(?P<key>hooks\.slack\.com/(?:services|workflows|triggers)/)" + _NOT_DONE + r"[A-Za-z0-9/_\-]+",
        _keep("key"),
    ),
    # ?token=  &sig=  &X-Amz-Signature=  #access_token=  ;AccountKey= ...
    _rule(
        "URL query secret",
        ["token=", "sig=", "signature=", "key=", "secret=", "passw", "pwd=", "credential="],
        r"(?P<key>[?&;#][\w.\-]*?(?:token|sig|signature|key|secret|password|passwd|pwd|credential)=)"
        + _NOT_DONE + r"[^&#\s'\"<>;]+",
        _keep("key"), re.IGNORECASE,
    ),
    _rule(
        "GitHub token", ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        _START + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})" + _END,
    ),
    _rule(
        "GitLab token", ["glpat-", "gldt-", "glptt-", "glrt-", "glcbt-", "gloas-"],
        _START + r"gl(?:pat|dt|ptt|rt|cbt|oas)-[A-Za-z0-9_\-]{20,}",
    ),
    _rule("Slack token", ["xox", "xapp-"], _START + r"(?:xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-\d-[A-Za-z0-9\-]{10,})"),
    _rule(
        "AWS access key id", ["akia", "asia", "abia", "acca", "agpa", "aida", "aroa", "anpa"],
        _START + r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}" + _END,
    ),
    _rule("Google API key", ["aiza"], _START + r"AIza[0-9A-Za-z_\-]{35}" + _END),
    _rule(
        "API key (sk-)", ["sk-"],
        _START + r"sk-(?:proj-|svcacct-|admin-|ant-(?:api\d\d-)?)?(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])"
        r"[A-Za-z0-9_\-]{20,}",
    ),
    _rule("Stripe key", ["k_live_", "k_test_"], _START + r"[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}" + _END),
    _rule("Hugging Face token", ["hf_"], _START + r"hf_[A-Za-z0-9]{30,}" + _END),
    _rule("PyPI token", ["pypi-"], _START + r"pypi-AgE[A-Za-z0-9_\-]{50,}"),
    _rule("npm token", ["npm_"], _START + r"npm_[A-Za-z0-9]{36}" + _END),
    _rule("JWT", ["eyj"], _START + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    _rule(
        "authorization header", ["authorization"],
        r"(?P<key>(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?i:bearer|basic|token)\s+)" + _NOT_DONE + r"[^\s'\"]+",
        _keep("key"),
    ),
    _rule("bearer token", ["bearer"], r"(?P<key>\bBearer\s+)" + _NOT_DONE + r"[A-Za-z0-9._~+/\-]{20,}=*", _keep("key")),
    # api_key = "..."  "password": "..."  token='...': a quoted literal after a credential name.
    _rule(
        "quoted credential", _CREDENTIAL_HINTS,
        r"(?P<key>" + _CREDENTIAL_WORD + r"[\"']?\s*[:=]\s*(?P<q>[\"']))" + _NOT_DONE + r"[^\"'\s]{4,}(?=(?P=q))",
        _keep("key"), re.IGNORECASE, gate=r"[:=]\s*[\"']",
    ),
    # A whole line `password: hunter2` (YAML, .env, ini, and their diffs); not `token = tokens[0]`.
    _rule(
        "credential assignment", _CREDENTIAL_HINTS,
        r"(?P<key>^[+\- ]?[ \t]*(?:export[ \t]+)?[\w.\-]*" + _CREDENTIAL_WORD + r"[ \t]*[:=][ \t]*)"
        r"(?P<value>[^\s#'\"(){}\[\],;]{6,})(?=[ \t]*(?:#.*)?$)",
        _unquoted_secret, re.IGNORECASE | re.MULTILINE,
    ),
]
"""Every secret shape, applied in order."""

BINARY_PATCH = re.compile(r"^GIT binary patch\n(?:(?:literal|delta) \d+\n(?:[^\n]+\n)*(?:\n|\Z))+", re.MULTILINE)
"""The base85 hunks of ``git diff --binary``: data, not text (redacting them would break ``git apply``)."""


# ------------------------------------------------------------------ known values

_known: set[str] = set()
_warned: set[str] = set()
MIN_KNOWN_LENGTH = 8
"""Shorter values found by name are redacted where they are recorded, not searched for in all text."""


def _searchable(value: str) -> bool:
    return len(value) >= MIN_KNOWN_LENGTH and value != REDACTED and not _PATHLIKE.match(value)


SECRET_WORDS = frozenset({"TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "PWD", "KEY", "APIKEY", "CREDENTIAL",
                          "CREDENTIALS", "AUTH", "SIGNATURE"})
NOT_A_VALUE = frozenset({"FILE", "PATH", "DIR", "SOCK", "PROVIDER", "BACKEND", "TYPE", "MODE", "NAME", "ID"})
"""``GOOGLE_APPLICATION_CREDENTIALS_FILE``, ``PIP_KEYRING_PROVIDER``: not the secret itself."""


def _holds_a_secret(name: str) -> bool:
    """Whether a variable's value is searched for in every text: a whole word of its name is a credential word.

    Stricter than :data:`SECRET_NAME` (which only decides what the environment
    record shows): ``PIP_KEYRING_PROVIDER=subprocess`` must not redact every
    "subprocess" of a traceback.
    """
    words = name.upper().split("_")
    return bool(SECRET_WORDS.intersection(words)) and words[-1] not in NOT_A_VALUE


def environment_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values of environment variables named like credentials (paths and short values left out)."""
    environ = os.environ if environ is None else environ
    return {
        value for name, value in environ.items()
        if name not in NOT_SECRET_NAMES and _holds_a_secret(name) and _searchable(value)
    }


def _known_values() -> list[str]:
    return sorted(_known | environment_secrets(), key=len, reverse=True)


# ------------------------------------------------------------------ the API


def find_secret(text: str) -> str | None:
    """The kind of the first secret shape in ``text`` ("GitHub token"), or None."""
    lowered = text.lower()
    for rule in RULES:
        if rule.applies(text, lowered):
            for match in rule.pattern.finditer(text):
                if rule.replacement(match) != match.group(0):
                    return rule.kind
    return None


def redact_text(text: str) -> str:
    """``text`` with every secret replaced by ``[REDACTED]``: known values, then every shape."""
    if not text:
        return text
    return _redact(text, _known_values())


def _redact(text: str, known: Iterable[str]) -> str:
    if "GIT binary patch" in text:
        pieces, last = [], 0
        for match in BINARY_PATCH.finditer(text):
            pieces += [_redact_plain(text[last:match.start()], known), match.group(0)]
            last = match.end()
        return "".join(pieces) + _redact_plain(text[last:], known)
    return _redact_plain(text, known)


def _redact_plain(text: str, known: Iterable[str]) -> str:
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    lowered = text.lower()
    for rule in RULES:
        if rule.applies(text, lowered):
            text = rule.pattern.sub(rule.replace, text)
    return text


def redact_env(name: str, value: str) -> str:
    """The value to record for environment variable ``name``: by its name, else by its shape."""
    if name not in NOT_SECRET_NAMES and SECRET_NAME.search(name):
        return REDACTED
    return redact_text(value)


BINARY_OUTPUTS = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "application/pdf")
"""Notebook output payloads that are base64 data, never searched (an image is not text)."""


def redact_tree(value: Any) -> Any:
    """A JSON-like structure (notebook outputs, metadata) with every string redacted; binary payloads kept."""
    return _tree(value, _known_values())


def _tree(value: Any, known: list[str]) -> Any:
    if isinstance(value, str):
        return _redact(value, known) if value else value
    if isinstance(value, list):
        return [_tree(item, known) for item in value]
    if isinstance(value, dict):
        return {k: item if k in BINARY_OUTPUTS else _tree(item, known) for k, item in value.items()}
    return value


def redact_notebook(text: str) -> str:
    """A notebook file (JSON) with its sources, text outputs and metadata redacted; images kept."""
    import nbformat

    notebook = nbformat.reads(text, as_version=4)
    return nbformat.writes(nbformat.from_dict(redact_tree(notebook)))


def redact_params(tree: Any, *, source: str = "params.yaml", quiet: bool = False, prefix: str = "") -> Any:
    """``tree`` (nested or flattened params) with every secret-looking value redacted.

    A value is a secret by its shape (anything :func:`redact_text` finds), or by
    its key (``features.api_token``: the whole value). Each such key is named
    once on stderr (unless ``quiet``), and a value found by its key is from then
    on redacted wherever it appears (notebook outputs, errors).
    """
    if isinstance(tree, dict):
        return {k: redact_params(v, source=source, quiet=quiet, prefix=f"{prefix}{k}.") for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact_params(item, source=source, quiet=quiet, prefix=prefix) for item in tree]
    if not isinstance(tree, str) or not tree or tree == REDACTED:
        return tree
    key = prefix.rstrip(".")
    if SECRET_KEY.search(key):
        kind, redacted = "its key names a credential", REDACTED
        if _searchable(tree):
            _known.add(tree)
    else:
        redacted = redact_text(tree)
        if redacted == tree:
            return tree
        kind = find_secret(tree) or "the value of a credential variable of the environment"
    if not quiet:
        _warn(source, key, kind, redacted)
    return redacted


def _warn(source: str, key: str, kind: str, redacted: str) -> None:
    if key in _warned:
        return
    _warned.add(key)
    shown = REDACTED if redacted == REDACTED else repr(redacted)
    print(f"{source}: {key} looks like a secret ({kind}); it is recorded as {shown}", file=sys.stderr)


NAMES = {"tracking.experiment": "the MLflow experiment", "model.registered_name": "the model in the MLflow registry"}
"""Params that name something in the tracking store: used as they are, so never redacted, never a secret."""


def check_names(params: Any, *, registers_model: bool, source: str = "params.yaml") -> None:
    """Refuse, before any work, a secret-looking experiment or registered-model name.

    A secret in any other params value is recorded as ``[REDACTED]``; a name
    cannot be: it is the key other runs, the registry and the MLflow UI find
    things by, shown to everyone who can read the store.
    """
    from reprobook.errors import ReprobookError

    values = {"tracking.experiment": params.tracking.experiment}
    if registers_model:
        values["model.registered_name"] = params.model.registered_name
    for key, value in values.items():
        kind = find_secret(value)
        if kind:
            raise ReprobookError(
                f"{source}: {key} looks like a secret ({kind}); it names {NAMES[key]}, which everyone "
                f"with access to the tracking store reads, so it cannot be redacted: set a plain name"
            )
