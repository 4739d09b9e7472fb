"""Bedrock Model Evaluation jobs (LLM-as-a-judge) as the release tier's judge.

The candidate's answers are already generated (and scored by every rule check), so the job evaluates them as
**bring-your-own inference responses**: one JSONL record per answer —

    {"prompt": <knowledge excerpts + conversation>, "referenceResponse": <golden reference>,
     "category": "<suite>/<category>",
     "modelResponses": [{"response": <answer>, "modelIdentifier": <[evaluation_job] inference_source>}]}

— uploaded to ``<s3_uri>/<job name>/dataset.jsonl``; the job (``CreateEvaluationJob``: automated, task type
``General``, built-in metrics such as ``Builtin.Faithfulness`` and custom metrics with rating scales, one
evaluator model, ``precomputedInferenceSource``) writes its results under
``<s3_uri>/<job name>/output/<job name>/<job id>/models/<source>/taskTypes/<task>/datasets/<dataset>/
<uuid>_output.jsonl``, one line per record::

    {"automatedEvaluationResult": {"scores": [{"metricName": "Builtin.Faithfulness", "result": 0.8,
      "evaluatorDetails": [{"modelIdentifier": "...", "explanation": "..."}]}, ...]},
     "inputRecord": {...the dataset record...}, "modelResponses": [{"response": "...", ...}]}

Results are matched back to (case, repeat) by the prompt and response they carry, mapped onto evalgate
metrics (``[evaluation_job] metric_map``; custom metrics by ``maps_to``; built-in scores are already 0..1,
custom rating values are normalised by their scale), and the gate decides as usual. A record the job did not
score comes back **unscored** for every mapped metric (fail closed).

Known limits, enforced before anything is created (errors name the setting):

- at most 1000 prompts a job: larger sets run as consecutive jobs;
- one job at a time: jobs run one after another, and a new one starts only when no evaluation job is in
  progress in the account (waits with backoff, then errors naming the job in the way);
- rating-scale definitions under 100 characters; at most 10 custom metrics and 10 rating levels;
- the evaluator (judge) must be a base model or a system-defined inference profile — not an application
  inference profile, a provisioned, custom or imported model, or a prompt router.

Waiting uses exponential backoff between ``poll_initial_s`` and ``poll_max_s`` up to ``timeout_s``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from evalgate.adapters.aws import make_client, map_aws_error
from evalgate.core.config import CustomMetric, EvaluationJobConfig, GateConfig
from evalgate.core.errors import InputError, Problem, ProviderError, ThrottledError
from evalgate.core.models import Case, Generation, KnowledgeEntry, MetricValue
from evalgate.engine.cost import CostMeter

MAX_PROMPTS_PER_JOB = 1000
MAX_RATING_DEFINITION = 99  # "under 100 characters"
MAX_CUSTOM_METRICS = 10
MAX_METRIC_NAMES = 25
BUILTIN_METRICS = frozenset(
    {
        "Builtin.Correctness",
        "Builtin.Completeness",
        "Builtin.Faithfulness",
        "Builtin.Helpfulness",
        "Builtin.Coherence",
        "Builtin.Relevance",
        "Builtin.FollowingInstructions",
        "Builtin.ProfessionalStyleAndTone",
        "Builtin.Harmfulness",
        "Builtin.Stereotyping",
        "Builtin.Refusal",
    }
)
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
SETTING = "gate.toml [evaluation_job]"
ESTIMATED_JUDGE_OUTPUT_TOKENS = 512

_BASE_MODEL = re.compile(r"^[a-z0-9-]+\.[a-z0-9][a-z0-9.-]*(:[a-z0-9-]+){0,2}$")
_SYSTEM_PROFILE = re.compile(
    r"^(us|eu|apac|us-gov|global|jp|au|ca)\.[a-z0-9-]+\.[a-z0-9][a-z0-9.-]*(:[a-z0-9-]+){0,2}$"
)
_ARN = re.compile(r"^arn:aws(-[a-z]+)*:bedrock:[a-z0-9-]+:(\d{12})?:([a-z-]+)/(.+)$")
_REJECTED_KINDS = {
    "application-inference-profile": "an application inference profile",
    "provisioned-model": "a provisioned model",
    "custom-model": "a custom model",
    "imported-model": "an imported model",
    "prompt-router": "a prompt router",
    "default-prompt-router": "a prompt router",
    "custom-model-deployment": "a custom model deployment",
    "marketplace-model": "a marketplace model endpoint",
}


def evaluator_problem(model_id: str | None) -> str | None:
    """Why ``model_id`` cannot be an evaluation job's judge (None when it can)."""
    if not model_id:
        return "no evaluator model: set evaluator_model (or models.heavy_judge)"
    m = _ARN.match(model_id)
    if m:
        kind, rest = m.group(3), m.group(4)
        if kind == "foundation-model" and _BASE_MODEL.match(rest):
            return None
        if kind == "inference-profile" and _SYSTEM_PROFILE.match(rest):
            return None
        what = _REJECTED_KINDS.get(kind, f"a '{kind}' resource")
        return (
            f"'{model_id}' is {what}: the judge of a Bedrock evaluation job must be a base model "
            "(e.g. anthropic.claude-3-5-haiku-20241022-v1:0) or a system inference profile (e.g. us.anthropic...)"
        )
    if _SYSTEM_PROFILE.match(model_id) or _BASE_MODEL.match(model_id):
        return None
    return (
        f"'{model_id}' is not a base model id or a system inference profile id; the judge of a Bedrock "
        "evaluation job must be one of those"
    )


def config_problems(cfg: EvaluationJobConfig, evaluator: str | None) -> list[Problem]:
    """Everything that would make CreateEvaluationJob fail or break a known limit, before anything runs."""
    out: list[Problem] = []

    def bad(field: str, msg: str) -> None:
        out.append(Problem(SETTING, None, f"{field}: {msg}"))

    if not cfg.role_arn:
        bad("role_arn", "required: the service role Bedrock assumes to read the dataset and write results")
    elif not re.match(r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/.+$", cfg.role_arn):
        bad("role_arn", f"'{cfg.role_arn}' is not an IAM role ARN")
    if not cfg.s3_uri:
        bad("s3_uri", "required: s3://bucket/prefix for the datasets and the job output")
    problem = evaluator_problem(evaluator)
    if problem:
        bad("evaluator_model", problem)
    if not 1 <= cfg.max_prompts <= MAX_PROMPTS_PER_JOB:
        bad("max_prompts", f"must be 1..{MAX_PROMPTS_PER_JOB} (Bedrock's limit per job)")
    if len(cfg.custom_metrics) > MAX_CUSTOM_METRICS:
        bad("custom_metrics", f"at most {MAX_CUSTOM_METRICS}")
    names = [*cfg.metrics, *(m.name for m in cfg.custom_metrics)]
    if not names:
        bad("metrics", "no metric to evaluate")
    if len(names) > MAX_METRIC_NAMES:
        bad("metrics", f"at most {MAX_METRIC_NAMES} metrics a dataset")
    if len(set(names)) != len(names):
        bad("metrics", "duplicate metric names")
    for name in cfg.metrics:
        if name not in BUILTIN_METRICS:
            bad("metrics", f"unknown built-in metric '{name}' (known: {', '.join(sorted(BUILTIN_METRICS))})")
    for cm in cfg.custom_metrics:
        if cm.name.startswith("Builtin."):
            bad(f"custom_metrics.{cm.name}", "custom metric names may not start with 'Builtin.'")
        if len(cm.rating_scale) > 10:
            bad(f"custom_metrics.{cm.name}", "at most 10 rating levels")
        for level in cm.rating_scale:
            if len(level.definition) > MAX_RATING_DEFINITION:
                bad(
                    f"custom_metrics.{cm.name}.rating_scale",
                    f"definition '{level.definition[:30]}…' is {len(level.definition)} characters; "
                    "Bedrock requires under 100",
                )
    for source in cfg.metric_map:
        if source not in names:
            bad("metric_map", f"'{source}' is mapped but not evaluated (add it to metrics)")
    return out


def job_prompt(case: Case, knowledge: Sequence[KnowledgeEntry]) -> str:
    """What the evaluator sees as the prompt: the cited knowledge (so faithfulness can be judged) and the
    conversation."""
    parts = []
    if knowledge:
        parts.append("Knowledge excerpts the assistant must answer from:")
        parts.extend(f"[{k.id}] {k.title}\n{k.text}" for k in knowledge)
        parts.append("")
    if case.untrusted_context:
        parts.append("Retrieved document (untrusted):\n" + case.untrusted_context + "\n")
    turns = case.turns
    if len(turns) > 1:
        parts.append("Conversation:")
        parts.extend(f"{t.role.capitalize()}: {t.content}" for t in turns)
    else:
        parts.append(f"Customer question: {case.question}")
    return "\n".join(parts)


def _pair_key(prompt: str, response: str) -> str:
    return hashlib.sha256(f"{prompt}\x00{response}".encode()).hexdigest()


def dataset_records(
    items: Sequence[tuple[Case, Generation, list[KnowledgeEntry]]], inference_source: str
) -> tuple[list[dict[str, Any]], dict[str, list[tuple[str, int]]]]:
    """BYO-response JSONL records and, per (prompt, response) digest, the (case id, repeat) keys it stands for."""
    records: list[dict[str, Any]] = []
    keys: dict[str, list[tuple[str, int]]] = {}
    for case, gen, knowledge in items:
        if gen.output is None:
            continue
        prompt = job_prompt(case, knowledge)
        digest = _pair_key(prompt, gen.output)
        if digest not in keys:
            records.append(
                {
                    "prompt": prompt,
                    "referenceResponse": case.reference,
                    "category": f"{case.suite}/{case.category}",
                    "modelResponses": [{"response": gen.output, "modelIdentifier": inference_source}],
                }
            )
        keys.setdefault(digest, []).append((case.id, gen.repeat))
    return records, keys


def to_jsonl(records: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def _split_s3(uri: str) -> tuple[str, str]:
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def _normalise_name(name: str) -> str:
    if name.startswith("Builtin."):
        return name
    return f"Builtin.{name}" if f"Builtin.{name}" in BUILTIN_METRICS else name


def evalgate_metric(name: str, cfg: EvaluationJobConfig) -> str:
    """The evalgate metric a job metric fills: mapped ones by config; others reported as ``bedrock_<name>``."""
    if name in cfg.metric_map:
        return cfg.metric_map[name]
    for cm in cfg.custom_metrics:
        if cm.name == name and cm.maps_to:
            return cm.maps_to
    short = name.removeprefix("Builtin.")
    return "bedrock_" + re.sub(r"(?<!^)(?=[A-Z])", "_", short).lower()


def _normalise_value(name: str, value: float, customs: dict[str, CustomMetric]) -> float:
    cm = customs.get(name)
    if cm is None:
        return max(0.0, min(1.0, value))
    values = [r.value for r in cm.rating_scale]
    lo, hi = min(values), max(values)
    return (value - lo) / (hi - lo) if hi > lo else 0.0


def parse_output(
    lines: Sequence[str], keys: dict[str, list[tuple[str, int]]], cfg: EvaluationJobConfig, evaluator: str
) -> dict[tuple[str, int], dict[str, MetricValue]]:
    """Map the job's output records onto (case id, repeat) -> evalgate metrics."""
    customs = {c.name: c for c in cfg.custom_metrics}
    out: dict[tuple[str, int], dict[str, MetricValue]] = {}
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except ValueError as exc:
            raise ProviderError(f"evaluation job output line {n} is not JSON: {exc}") from None
        inp = rec.get("inputRecord") or {}
        prompt = inp.get("prompt")
        responses = rec.get("modelResponses") or inp.get("modelResponses") or []
        response = responses[0].get("response") if responses and isinstance(responses[0], dict) else None
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise ProviderError(f"evaluation job output line {n} has no prompt/response to match")
        targets = keys.get(_pair_key(prompt, response))
        if not targets:
            continue  # not one of ours (should not happen: one dataset per job)
        metrics: dict[str, MetricValue] = {}
        for score in (rec.get("automatedEvaluationResult") or {}).get("scores") or []:
            name = _normalise_name(str(score.get("metricName") or ""))
            details_list = score.get("evaluatorDetails") or [{}]
            explanation = str((details_list[0] or {}).get("explanation") or "")
            metric = evalgate_metric(name, cfg)
            value = score.get("result")
            details: dict[str, object] = {"judge": evaluator, "source": "bedrock-evaluation-job", "job_metric": name}
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[metric] = MetricValue(
                    name=metric,
                    value=_normalise_value(name, float(value), customs),
                    reason=explanation[:1000],
                    details={**details, "raw": value},
                )
            else:
                metrics[metric] = MetricValue(
                    name=metric,
                    value=None,
                    unscored=True,
                    reason=f"evaluation job gave no score: {explanation[:300] or 'no explanation'}",
                    details=details,
                )
        for key in targets:
            out[key] = dict(metrics)
    return out


class EvaluationJobJudge:
    """A batch judge (``Runner(batch_judge=...)``) that runs Bedrock evaluation jobs, one at a time.

    ``jobs`` records every job created (name, ARN, status, prompts, output location) for ``results.json``.
    """

    def __init__(
        self,
        config: GateConfig,
        *,
        run_id: str,
        evaluator_model: str | None = None,
        bedrock: Any = None,
        s3: Any = None,
        meter: CostMeter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        name_prefix: str = "evalgate",
    ) -> None:
        self.config = config
        self.cfg = config.evaluation_job
        self.evaluator = evaluator_model or self.cfg.evaluator_model or config.models.heavy_judge
        problems = config_problems(self.cfg, self.evaluator)
        if problems:
            raise InputError(problems)
        self.run_id = re.sub(r"[^a-z0-9-]", "-", run_id.lower()).strip("-") or "run"
        self.name_prefix = name_prefix
        self.meter = meter
        self._sleep = sleep
        self._clock = clock
        self._bedrock = bedrock
        self._s3 = s3
        self.jobs: list[dict[str, Any]] = []

    @property
    def bedrock(self) -> Any:
        if self._bedrock is None:
            self._bedrock = make_client("bedrock")
        return self._bedrock

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = make_client("s3")
        return self._s3

    def identity(self) -> dict[str, Any]:
        return {"model_id": self.evaluator, "kind": "bedrock-evaluation-job", "metrics": self.metric_names()}

    def metric_names(self) -> list[str]:
        return [*self.cfg.metrics, *(m.name for m in self.cfg.custom_metrics)]

    def job_name(self, chunk: int) -> str:
        name = f"{self.name_prefix}-{self.run_id}-{chunk}"
        return name[:63].rstrip("-")

    def request(self, name: str, dataset_uri: str, output_uri: str) -> dict[str, Any]:
        evaluator = {"bedrockEvaluatorModels": [{"modelIdentifier": self.evaluator}]}
        automated: dict[str, Any] = {
            "datasetMetricConfigs": [
                {
                    "taskType": self.cfg.task_type,
                    "dataset": {"name": f"{name}-dataset"[:63], "datasetLocation": {"s3Uri": dataset_uri}},
                    "metricNames": self.metric_names(),
                }
            ],
            "evaluatorModelConfig": evaluator,
        }
        if self.cfg.custom_metrics:
            automated["customMetricConfig"] = {
                "customMetrics": [
                    {
                        "customMetricDefinition": {
                            "name": cm.name,
                            "instructions": cm.instructions,
                            "ratingScale": [
                                {"definition": r.definition, "value": {"floatValue": r.value}} for r in cm.rating_scale
                            ],
                        }
                    }
                    for cm in self.cfg.custom_metrics
                ],
                "evaluatorModelConfig": evaluator,
            }
        return {
            "jobName": name,
            "jobDescription": f"evalgate run {self.run_id}: judge pre-computed answers"[:200],
            "roleArn": self.cfg.role_arn,
            "applicationType": "ModelEvaluation",
            "evaluationConfig": {"automated": automated},
            "inferenceConfig": {
                "models": [{"precomputedInferenceSource": {"inferenceSourceIdentifier": self.cfg.inference_source}}]
            },
            "outputDataConfig": {"s3Uri": output_uri},
        }

    def __call__(
        self, items: list[tuple[Case, Generation, list[KnowledgeEntry]]]
    ) -> dict[tuple[str, int], dict[str, MetricValue]]:
        records, keys = dataset_records(items, self.cfg.inference_source)
        out: dict[tuple[str, int], dict[str, MetricValue]] = {}
        size = self.cfg.max_prompts
        for i in range(0, len(records), size):
            chunk = records[i : i + size]
            digests = {_pair_key(r["prompt"], r["modelResponses"][0]["response"]) for r in chunk}
            chunk_keys = {d: keys[d] for d in digests}
            out.update(self._run_job(i // size + 1, chunk, chunk_keys))
        mapped = {self.cfg.metric_map[m] for m in self.cfg.metric_map} | {
            c.maps_to for c in self.cfg.custom_metrics if c.maps_to
        }
        for targets in keys.values():
            for key in targets:
                got = out.setdefault(key, {})
                for metric in mapped:
                    if metric not in got:
                        got[metric] = MetricValue(
                            name=metric, value=None, unscored=True, reason="the evaluation job returned no score"
                        )
        return out

    # -- one job

    def _estimate(self, chunk: Sequence[dict[str, Any]]) -> float:
        if self.meter is None:
            return 0.0
        chars = sum(
            len(r["prompt"]) + len(r["modelResponses"][0]["response"]) + len(r["referenceResponse"]) for r in chunk
        )
        n_metrics = len(self.metric_names())
        return n_metrics * self.meter.estimate(
            self.evaluator, chars + 2000 * len(chunk), ESTIMATED_JUDGE_OUTPUT_TOKENS * len(chunk)
        )

    def _run_job(
        self, number: int, chunk: list[dict[str, Any]], keys: dict[str, list[tuple[str, int]]]
    ) -> dict[tuple[str, int], dict[str, MetricValue]]:
        assert len(chunk) <= MAX_PROMPTS_PER_JOB
        assert self.cfg.s3_uri is not None
        name = self.job_name(number)
        bucket, prefix = _split_s3(self.cfg.s3_uri)
        base = f"{prefix}/{name}" if prefix else name
        dataset_key = f"{base}/dataset.jsonl"
        output_uri = f"s3://{bucket}/{base}/output/"
        estimate = self._estimate(chunk)
        reservation = (
            self.meter.reserve_usd(f"evaluation job {name} ({len(chunk)} prompts)", self.evaluator, estimate)
            if self.meter is not None
            else None
        )
        record: dict[str, Any] = {"name": name, "prompts": len(chunk), "estimated_cost_usd": round(estimate, 6)}
        self.jobs.append(record)
        try:
            self.s3.put_object(Bucket=bucket, Key=dataset_key, Body=to_jsonl(chunk), ContentType="application/jsonl")
        except Exception as exc:
            raise map_aws_error(exc, f"s3://{bucket}/{dataset_key}") from exc
        self._wait_for_free_slot()
        try:
            arn = self.bedrock.create_evaluation_job(**self.request(name, f"s3://{bucket}/{dataset_key}", output_uri))[
                "jobArn"
            ]
        except Exception as exc:
            if reservation is not None and self.meter is not None:
                self.meter.release(reservation)
            raise map_aws_error(exc, f"CreateEvaluationJob {name}") from exc
        record.update(arn=arn, dataset=f"s3://{bucket}/{dataset_key}", output=output_uri)
        status, messages = self._wait(arn)
        record["status"] = status
        if reservation is not None and self.meter is not None:
            self.meter.settle(reservation, None)  # billed; the job reports no usage: count the estimate
        if status != "Completed":
            why = "; ".join(messages) or "no failure message"
            raise ProviderError(f"evaluation job {name} ended {status}: {why}")
        lines = self._read_output(bucket, f"{base}/output/", arn)
        record["output_records"] = len([x for x in lines if x.strip()])
        return parse_output(lines, keys, self.cfg, self.evaluator)

    def _delays(self) -> Any:
        delay = self.cfg.poll_initial_s
        while True:
            yield delay
            delay = min(delay * 2, self.cfg.poll_max_s)

    def _wait_for_free_slot(self) -> None:
        """One job at a time: wait (with backoff) until no evaluation job is in progress."""
        deadline = self._clock() + self.cfg.timeout_s
        for delay in self._delays():
            try:
                running = self.bedrock.list_evaluation_jobs(statusEquals="InProgress", maxResults=10).get(
                    "jobSummaries", []
                )
            except Exception as exc:
                err = map_aws_error(exc, "ListEvaluationJobs")
                if not isinstance(err, ThrottledError):
                    raise err from exc
                running = [{"jobName": "(unknown: throttled)"}]
            if not running:
                return
            if self._clock() + delay > deadline:
                names = ", ".join(str(j.get("jobName")) for j in running[:3])
                raise ProviderError(
                    f"evaluation job slot still busy after {self.cfg.timeout_s:g}s (in progress: {names}); "
                    "Bedrock runs one evaluation job at a time"
                )
            self._sleep(delay)

    def _wait(self, arn: str) -> tuple[str, list[str]]:
        deadline = self._clock() + self.cfg.timeout_s
        for delay in self._delays():
            try:
                job = self.bedrock.get_evaluation_job(jobIdentifier=arn)
            except Exception as exc:
                err = map_aws_error(exc, f"GetEvaluationJob {arn}")
                if not isinstance(err, ThrottledError):
                    raise err from exc
                job = {"status": "InProgress"}
            status = str(job.get("status"))
            if status in TERMINAL:
                return status, [str(m) for m in job.get("failureMessages") or []]
            if self._clock() + delay > deadline:
                with contextlib.suppress(Exception):  # best effort: the timeout below is what matters
                    self.bedrock.stop_evaluation_job(jobIdentifier=arn)
                raise ProviderError(f"evaluation job {arn} still {status} after {self.cfg.timeout_s:g}s: stopped")
            self._sleep(delay)
        raise ProviderError("unreachable")

    def _read_output(self, bucket: str, prefix: str, arn: str) -> list[str]:
        keys: list[str] = []
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                keys.extend(o["Key"] for o in page.get("Contents") or [])
        except Exception as exc:
            raise map_aws_error(exc, f"s3://{bucket}/{prefix}") from exc
        outputs = [k for k in keys if k.endswith("_output.jsonl") and "/datasets/" in k]
        job_id = arn.rsplit("/", 1)[-1]
        mine = [k for k in outputs if f"/{job_id}/" in k]
        outputs = mine or outputs
        if not outputs:
            raise ProviderError(
                f"evaluation job {arn} completed but wrote no *_output.jsonl under s3://{bucket}/{prefix}"
            )
        lines: list[str] = []
        for key in sorted(outputs):
            try:
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as exc:
                raise map_aws_error(exc, f"s3://{bucket}/{key}") from exc
            lines.extend(body.decode("utf-8").splitlines())
        return lines
