"""The service's Bedrock guardrail as code: a typed, validated TOML file under ``guardrails/``.

One file is one guardrail: denied topics (name, definition, examples), content-filter strengths for input and
output, words and managed word lists, sensitive-information (PII) entities and regexes with their actions,
contextual grounding and relevance thresholds, and the messages shown when input or output is blocked.

``load_guardrail_spec`` checks it twice: against our own schema (unknown keys, missing fields, combinations AWS
refuses, such as an output strength on ``PROMPT_ATTACK``), then by building the ``CreateGuardrail`` request and
validating it with botocore's own service model (lengths, patterns, enums: AWS's contract, not a copy of it).
Every problem names the file, the line and the field.

The same request shape feeds the stack (``AWS::Bedrock::Guardrail`` via ``cfn_properties``) and the pipeline's
candidate guardrail (``CandidateGuardrail``: created for an evaluation run from the file as it is in the commit,
versioned, checked with ApplyGuardrail by the guardrail and injection suites, deleted afterwards), so what is
tested is what is deployed. ``fingerprint`` changes with any setting, and names the immutable guardrail version.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evalgate.core.config import locate_toml_key
from evalgate.core.errors import InputError, Problem
from evalgate.core.inputs import read_text

Strength = Literal["NONE", "LOW", "MEDIUM", "HIGH"]
FilterType = Literal["SEXUAL", "VIOLENCE", "HATE", "INSULTS", "MISCONDUCT", "PROMPT_ATTACK"]
Action = Literal["BLOCK", "ANONYMIZE"]


class Topic(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    definition: str
    examples: list[str] = Field(default_factory=list)


class Strengths(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Strength
    output: Strength


class Words(BaseModel):
    model_config = ConfigDict(extra="forbid")

    words: list[str] = Field(default_factory=list)
    managed: list[Literal["PROFANITY"]] = Field(default_factory=list)


class Pii(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str  # checked against botocore's GuardrailPiiEntityType enum
    action: Action


class Regex(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    pattern: str
    action: Action
    description: str | None = None


class Grounding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grounding: Annotated[float, Field(ge=0.0, le=0.99)] | None = None
    relevance: Annotated[float, Field(ge=0.0, le=0.99)] | None = None


class GuardrailSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None = None
    blocked_input_message: str
    blocked_output_message: str
    topics: list[Topic] = Field(default_factory=list)
    content_filters: dict[FilterType, Strengths] = Field(default_factory=dict)
    words: Words = Field(default_factory=Words)
    pii: list[Pii] = Field(default_factory=list)
    regexes: list[Regex] = Field(default_factory=list)
    grounding: Grounding = Field(default_factory=Grounding)

    @model_validator(mode="after")
    def _aws_rules(self) -> GuardrailSpec:
        attack = self.content_filters.get("PROMPT_ATTACK")
        if attack is not None and attack.output != "NONE":
            raise ValueError("content_filters.PROMPT_ATTACK.output: must be NONE (prompt attacks are checked on input)")
        if not (
            self.topics
            or self.content_filters
            or self.words.words
            or self.words.managed
            or self.pii
            or self.regexes
            or self.grounding.grounding is not None
            or self.grounding.relevance is not None
        ):
            raise ValueError("(file): a guardrail needs at least one policy (topics, filters, words, pii, grounding)")
        names = [t.name for t in self.topics]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise ValueError(f"topics: the topic name {dup!r} is used twice")
        return self

    # ------------------------------------------------------------------------------------------ request shape

    def request(self, name: str | None = None) -> dict[str, Any]:
        """``CreateGuardrail`` parameters (also the ``AWS::Bedrock::Guardrail`` properties, camelCase)."""
        req: dict[str, Any] = {
            "name": name or self.name,
            "blockedInputMessaging": self.blocked_input_message,
            "blockedOutputsMessaging": self.blocked_output_message,
        }
        if self.description:
            req["description"] = self.description
        if self.topics:
            req["topicPolicyConfig"] = {
                "topicsConfig": [
                    {"name": t.name, "definition": t.definition, "examples": t.examples, "type": "DENY"}
                    for t in self.topics
                ]
            }
        if self.content_filters:
            req["contentPolicyConfig"] = {
                "filtersConfig": [
                    {"type": k, "inputStrength": v.input, "outputStrength": v.output}
                    for k, v in sorted(self.content_filters.items())
                ]
            }
        if self.words.words or self.words.managed:
            words: dict[str, Any] = {}
            if self.words.words:
                words["wordsConfig"] = [{"text": w} for w in self.words.words]
            if self.words.managed:
                words["managedWordListsConfig"] = [{"type": m} for m in self.words.managed]
            req["wordPolicyConfig"] = words
        if self.pii or self.regexes:
            sensitive: dict[str, Any] = {}
            if self.pii:
                sensitive["piiEntitiesConfig"] = [{"type": p.type, "action": p.action} for p in self.pii]
            if self.regexes:
                sensitive["regexesConfig"] = [
                    {"name": r.name, "pattern": r.pattern, "action": r.action}
                    | ({"description": r.description} if r.description else {})
                    for r in self.regexes
                ]
            req["sensitiveInformationPolicyConfig"] = sensitive
        filters = [
            {"type": kind, "threshold": value}
            for kind, value in (("GROUNDING", self.grounding.grounding), ("RELEVANCE", self.grounding.relevance))
            if value is not None
        ]
        if filters:
            req["contextualGroundingPolicyConfig"] = {"filtersConfig": filters}
        return req

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.request(), sort_keys=True).encode()).hexdigest()

    def cfn_properties(self) -> dict[str, Any]:
        """``AWS::Bedrock::Guardrail`` properties (the CloudFormation names are the API's, capitalised)."""
        props: dict[str, Any] = _capitalise(self.request())
        return props


def _capitalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: _capitalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_capitalise(v) for v in value]
    return value


# Where a request field comes from in the file (for botocore's messages).
_REQUEST_TO_FILE = (
    ("topicPolicyConfig.topicsConfig", "topics"),
    ("contentPolicyConfig.filtersConfig", "content_filters"),
    ("wordPolicyConfig.wordsConfig", "words.words"),
    ("wordPolicyConfig.managedWordListsConfig", "words.managed"),
    ("sensitiveInformationPolicyConfig.piiEntitiesConfig", "pii"),
    ("sensitiveInformationPolicyConfig.regexesConfig", "regexes"),
    ("contextualGroundingPolicyConfig.filtersConfig", "grounding"),
    ("blockedInputMessaging", "blocked_input_message"),
    ("blockedOutputsMessaging", "blocked_output_message"),
    ("description", "description"),
    ("name", "name"),
)


def _file_field(request_path: str) -> str:
    for api, ours in _REQUEST_TO_FILE:
        if request_path.startswith(api):
            return ours + request_path[len(api) :]
    return request_path


def botocore_problems(request: dict[str, Any]) -> list[str]:
    """What botocore's bedrock service model says is wrong with a ``CreateGuardrail`` request: its own validator
    (types, required members, minimums) plus the model's enums, maximum lengths and patterns, which botocore
    leaves to the service to check."""
    import re

    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model("bedrock").operation_model("CreateGuardrail").input_shape
    out: list[str] = []
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        for line in report.generate_report().splitlines():
            m = re.search(r"parameter (?:input\.)?([\w.\[\]]+)", line)
            out.append(f"{_file_field(m.group(1))}: {line.strip()}" if m else line.strip())
    _check_shape(request, shape, "", out)
    return out


def _check_shape(value: Any, shape: Any, path: str, out: list[str]) -> None:
    meta = shape.metadata
    where = _file_field(path.lstrip(".")) or "(file)"
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, member in shape.members.items():
            if key in value:
                _check_shape(value[key], member, f"{path}.{key}", out)
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{where}: at most {meta['max']} items (AWS limit), got {len(value)}")
        for i, item in enumerate(value):
            _check_shape(item, shape.member, f"{path}[{i}]", out)
    elif shape.type_name == "string" and isinstance(value, str):
        import re

        if shape.enum and value not in shape.enum:
            close = __import__("difflib").get_close_matches(value, shape.enum, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            out.append(f"{where}: {value!r} is not one of AWS's values{hint}: {', '.join(shape.enum)}")
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{where}: at most {meta['max']} characters (AWS limit), got {len(value)}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            out.append(f"{where}: {value!r} does not match AWS's pattern {meta['pattern']}")
    elif (
        shape.type_name in ("double", "float", "integer", "long")
        and isinstance(value, int | float)
        and "max" in meta
        and value > meta["max"]
    ):
        out.append(f"{where}: at most {meta['max']} (AWS limit), got {value}")


def _line(text: str, field: str) -> int | None:
    """Line of ``field`` (``topics[2].name``, ``grounding.relevance``) in the TOML text."""
    import re

    m = re.match(r"(\w+)\[(\d+)\]\.?(\w+)?", field)
    if m:
        table, index, key = m.group(1), int(m.group(2)), m.group(3)
        seen = -1
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if line == f"[[{table}]]":
                seen += 1
                if seen == index and not key:
                    return n
            elif seen == index and key and line.split("=", 1)[0].strip() == key:
                return n
        return None
    return locate_toml_key(text, field.split("."))


def load_guardrail_spec(path: Path) -> GuardrailSpec:
    path = Path(path)
    shown = str(path)
    text = read_text(path, "guardrail file")  # path kind, UTF-8 (BOM dropped), the line of a bad byte
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise InputError.single(shown, None, "not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError.single(
            shown, getattr(exc, "lineno", None), f"not valid TOML: {str(exc).split(' (at line')[0]}"
        ) from None
    try:
        spec = GuardrailSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            field = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".") or "(file)"
            msg = err["msg"].removeprefix("Value error, ")
            if ": " in msg and field == "(file)":
                field, msg = msg.split(": ", 1)
            problems.append(Problem(shown, _line(text, field), f"{field}: {msg}"))
        raise InputError(problems) from None
    problems = [Problem(shown, _line(text, p.split(":", 1)[0]), p) for p in botocore_problems(spec.request())]
    if problems:
        raise InputError(problems)
    return spec


class CandidateGuardrail:
    """A guardrail made from the file for one evaluation run: created, versioned, used, then deleted.

    ``with CandidateGuardrail(spec, run_id) as (gid, version): ...`` — the suites call ApplyGuardrail on it. It is
    named ``evalgate-candidate-<fingerprint>`` and tagged, so a run that died leaves something recognisable.
    """

    def __init__(self, spec: GuardrailSpec, client: Any = None) -> None:
        if client is None:
            from evalgate.adapters.aws import make_client

            client = make_client("bedrock")
        self.spec = spec
        self.client = client
        self.name = f"evalgate-candidate-{spec.fingerprint()[:16]}"
        self.guardrail_id: str | None = None

    def __enter__(self) -> tuple[str, str]:
        from evalgate.adapters.aws import map_aws_error

        try:
            made = self.client.create_guardrail(
                **self.spec.request(self.name),
                tags=[{"key": "evalgate", "value": "candidate"}],
                clientRequestToken=self.spec.fingerprint()[:32],
            )
            self.guardrail_id = str(made["guardrailId"])
            version = self.client.create_guardrail_version(
                guardrailIdentifier=self.guardrail_id, description=f"evalgate {self.spec.fingerprint()[:16]}"
            )
        except Exception as exc:
            self.__exit__(None, None, None)
            raise map_aws_error(exc, f"creating the candidate guardrail {self.name}") from exc
        return self.guardrail_id, str(version["version"])

    def __exit__(self, *exc: object) -> None:
        if self.guardrail_id is None:
            return
        import contextlib

        with contextlib.suppress(Exception):  # a leftover candidate is harmless and named as such
            self.client.delete_guardrail(guardrailIdentifier=self.guardrail_id)
        self.guardrail_id = None
