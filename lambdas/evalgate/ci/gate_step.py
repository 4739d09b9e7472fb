"""The pipeline's quality gate, run inside CodeBuild: ``evalgate ci run|shard|merge|promote``.

``run`` (the EvalGate action, in the same pipeline stage as the manual approval ``Approve`` and started with it):

1. tier: ``release`` when the commit is a release candidate (a tag matching ``RELEASE_TAG_PATTERN`` points at
   HEAD, or the branch matches ``RELEASE_BRANCH_PATTERN``), else ``auto`` (evalgate picks from the git diff
   against the last approved commit, passed as ``EVALGATE_BASE_COMMIT``; ``full`` if this evalgate has no
   ``auto`` tier yet);
2. judge calibration: fetches the records kept under ``baselines/calibration/`` and runs ``evalgate calibrate
   --metric judge --if-needed`` for each judge of the tier, so a new judge model or a changed rubric is measured
   (costed, capped) before the eval uses it; records it writes are stored back; a judge that falls short of the
   floors (or cannot be measured) rejects the approval with the figures and fails the action (in a sharded gate
   every shard build does this before its shard, so a judge change is measured once per shard, each capped);
   then downloads the last approved ``results.json`` (``s3://$EVAL_BUCKET/baselines/approved/results.json``) as the
   baseline; the SQLite evaluation cache is synced with ``--cache-s3`` (``cache/evalgate-cache.sqlite``);
3. runs ``python -m evalgate run ... --out out/eval`` and uploads ``out/eval/*`` (report.html, summary.md,
   results.json, junit.xml) to ``s3://$EVAL_BUCKET/runs/<pipeline execution id>/``; publishes the run's cost as
   ``EvalGate/Pipeline EvalCostUSD``;
4. acts on the exit code:

   ===========  ==============================================================================================
   0 PASS       approves the waiting manual approval (PutApprovalResult) and succeeds; hallucinations the run
                still found are published to SNS for someone to look at
   3 REVIEW     sends an ``evalgate`` / ``EvalGate Verdict`` event to EventBridge (the notifier turns it into
                the review email: reasons, failing aggregates, worst cases, report and approval links; if the
                event cannot be built or sent, the summary goes to SNS directly) and succeeds; the manual
                approval keeps waiting (its review link opens this run's reports) until a human decides
   1 FAIL,      rejects the manual approval (so the stage ends at once) and exits with the same code, failing
   2, 4 ERROR   the action
   ===========  ==============================================================================================

``shard`` / ``merge`` (``evalShards`` > 1: the EvalGate action is a CodeBuild batch build): each shard build
(``SHARD=k/N``) runs step 1-3 with ``--shard k/N``, its own cache key (``EVALGATE_CACHE_KEY``) and its share of
the cost cap, and uploads ``out/shard/results.json`` to ``runs/<execution id>/shards/k.json``; a shard that
writes no results (or exits 2/4) rejects the approval and fails. The ``merge`` build (after every shard)
downloads the ``SHARD_COUNT`` shard results, runs ``python -m evalgate merge shards/*.json --baseline ...
--config ... --out out/eval`` and then acts on its exit code exactly as step 3-4 above.

``promote`` (after the approval): copies this run's ``results.json`` to ``baselines/approved/`` with the commit,
so the next run compares against the last *approved* change, never a rejected one.

Only the standard library, boto3 and ``evalgate.core.verdicts`` at import (the promote build installs boto3 and
this package without its dependencies); the rest of evalgate runs in the ``evalgate`` subprocesses it starts.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalgate.contracts.bucket import (
    BASELINE_COMMIT_KEY,
    BASELINE_KEY,
    CACHE_KEY,
    CALIBRATION_PREFIX,
    HISTORY_PREFIX,
    run_prefix,
    shard_results_key,
)
from evalgate.core.verdicts import ERROR, FAIL, PASS, REVIEW, USAGE
from evalgate.core.verdicts import EXIT_NAMES as VERDICTS

OUT_DIR = Path("out/eval")
CALIBRATION_DIR = Path(".evalgate") / "calibration"
SHARD_OUT_DIR = Path("out/shard")
SHARD_DIR = Path("shards")
REPORT_FILES = ("report.html", "summary.md", "results.json", "junit.xml")
CONTENT_TYPES = {".html": "text/html", ".md": "text/markdown", ".json": "application/json", ".xml": "application/xml"}
SNS_SUBJECT_MAX = 100
SNS_MESSAGE_MAX = 200_000
APPROVAL_SUMMARY_MAX = 512


# --------------------------------------------------------------------------------------------- pure decisions


def is_release_candidate(branch: str | None, tags: list[str], tag_pattern: str, branch_pattern: str) -> bool:
    """A tag matching ``tag_pattern`` on HEAD, or a branch matching ``branch_pattern``."""
    if any(fnmatch.fnmatchcase(t, tag_pattern) for t in tags if t):
        return True
    return bool(branch) and fnmatch.fnmatchcase(branch or "", branch_pattern)


@dataclass(frozen=True)
class Decision:
    verdict: str
    approval: str | None  # "Approved" / "Rejected" / None (leave waiting)
    notify: bool
    exit_code: int


def decide(exit_code: int) -> Decision:
    if exit_code == PASS:
        return Decision("PASS", "Approved", notify=False, exit_code=0)
    if exit_code == REVIEW:
        return Decision("REVIEW", None, notify=True, exit_code=0)
    verdict = VERDICTS.get(exit_code, f"ERROR (exit {exit_code})")
    return Decision(verdict, "Rejected", notify=False, exit_code=exit_code if exit_code else ERROR)


def hallucinations(results: dict[str, Any]) -> list[dict[str, Any]]:
    items = results.get("hallucinations")
    return [h for h in items if isinstance(h, dict)] if isinstance(items, list) else []


def record_cost(path: Path) -> float:
    """USD a judge calibration record says its measurement cost (0 when unreadable or unpriced)."""
    try:
        cost = json.loads(path.read_text(encoding="utf-8")).get("cost", {}).get("usd")
    except (OSError, ValueError, AttributeError):
        return 0.0
    return float(cost) if isinstance(cost, int | float) else 0.0


def run_cost(results: dict[str, Any]) -> float | None:
    usage = results.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("cost_usd"), int | float):
        return float(usage["cost_usd"])
    return None


# --------------------------------------------------------------------------------------------- configuration


@dataclass
class GateEnv:
    bucket: str
    topic_arn: str
    pipeline: str
    stage: str
    approval_action: str
    execution_id: str
    region: str
    branch: str = ""
    commit: str = ""
    tag_pattern: str = "v*"
    branch_pattern: str = "release/*"
    golden: str = "golden"
    config: str = "golden/gate.toml"
    generator: str = ""
    prompt: str = ""
    judge: str = ""
    max_cost: str = ""
    namespace: str = "EvalGate/Pipeline"
    cache_key: str = CACHE_KEY
    shard: str = ""  # "k/N" in a shard build of the batch
    shard_count: int = 0  # N in the merge build
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, env: dict[str, str] | None = None) -> GateEnv:
        e = dict(os.environ if env is None else env)

        def need(name: str) -> str:
            value = e.get(name, "").strip()
            if not value:
                raise SystemExit(f"gate_step: environment variable {name} is required")
            return value

        return cls(
            bucket=need("EVAL_BUCKET"),
            topic_arn=need("TOPIC_ARN"),
            pipeline=need("PIPELINE_NAME"),
            stage=need("GATE_STAGE"),
            approval_action=need("APPROVAL_ACTION"),
            execution_id=need("PIPELINE_EXECUTION_ID"),
            region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or "us-east-1",
            branch=e.get("SOURCE_BRANCH", ""),
            commit=e.get("SOURCE_COMMIT", "") or e.get("CODEBUILD_RESOLVED_SOURCE_VERSION", ""),
            tag_pattern=e.get("RELEASE_TAG_PATTERN", "v*"),
            branch_pattern=e.get("RELEASE_BRANCH_PATTERN", "release/*"),
            golden=e.get("GOLDEN_DIR", "golden"),
            config=e.get("THRESHOLDS_FILE", "golden/gate.toml"),
            generator=e.get("GENERATOR_MODEL_ID", ""),
            prompt=e.get("PROMPT_ID", ""),
            judge=e.get("JUDGE_MODEL_ID", ""),
            max_cost=e.get("MAX_RUN_COST_USD", ""),
            namespace=e.get("METRICS_NAMESPACE", "EvalGate/Pipeline"),
            cache_key=e.get("EVALGATE_CACHE_KEY", "") or CACHE_KEY,
            shard=e.get("SHARD", "").strip(),
            shard_count=int(e.get("SHARD_COUNT", "0") or 0),
            extra={
                "tickets": e.get("EVALGATE_TICKETS", "none") or "none",
                "github_repo": e.get("EVALGATE_GITHUB_REPO", ""),
                "github_token_secret": e.get("EVALGATE_GITHUB_TOKEN_SECRET", ""),
            },
        )

    @property
    def run_prefix(self) -> str:
        return run_prefix(self.execution_id)

    def shard_key(self, index: int) -> str:
        return shard_results_key(self.execution_id, index)

    def console(self, path: str) -> str:
        return f"https://{self.region}.console.aws.amazon.com/{path}"

    def report_link(self) -> str:
        return self.console(f"s3/object/{self.bucket}?region={self.region}&prefix={self.run_prefix}report.html")

    def runs_link(self) -> str:
        return self.console(f"s3/buckets/{self.bucket}?region={self.region}&prefix={self.run_prefix}")

    def history_link(self) -> str:
        return self.console(f"s3/object/{self.bucket}?region={self.region}&prefix={HISTORY_PREFIX}index.html")

    def approval_link(self) -> str:
        return self.console(f"codesuite/codepipeline/pipelines/{self.pipeline}/view?region={self.region}")


# --------------------------------------------------------------------------------------------- AWS side effects


class Gate:
    def __init__(
        self,
        cfg: GateEnv,
        s3: Any,
        sns: Any,
        codepipeline: Any,
        cloudwatch: Any,
        runner: Any = subprocess.run,
        sleep: Any = time.sleep,
        out_dir: Path = OUT_DIR,
        events: Any = None,
    ) -> None:
        self.cfg = cfg
        self.events = events
        self.s3 = s3
        self.sns = sns
        self.codepipeline = codepipeline
        self.cloudwatch = cloudwatch
        self.runner = runner
        self.sleep = sleep
        self.out_dir = out_dir
        self._help: str | None = None

    # -- inputs

    def git_tags(self) -> list[str]:
        try:
            result = self.runner(["git", "tag", "--points-at", "HEAD"], capture_output=True, text=True, check=False)
        except OSError:
            return []
        return [t.strip() for t in (result.stdout or "").splitlines() if t.strip()] if result.returncode == 0 else []

    def tier(self) -> str:
        """``release`` for release candidates, else ``auto`` (``full`` with an evalgate that has no ``auto`` tier)."""
        if is_release_candidate(self.cfg.branch, self.git_tags(), self.cfg.tag_pattern, self.cfg.branch_pattern):
            return "release"
        return "auto" if self.supports("auto") else "full"

    def _get(self, key: str) -> bytes | None:
        try:
            body: bytes = self.s3.get_object(Bucket=self.cfg.bucket, Key=key)["Body"].read()
            return body
        except self.s3.exceptions.NoSuchKey:
            return None
        except Exception as exc:  # AccessDenied on a missing key without ListBucket, first run, ...
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "AccessDenied"}:
                return None
            raise

    def fetch_baseline(self, dest: Path) -> tuple[Path | None, str]:
        body = self._get(BASELINE_KEY)
        commit = (self._get(BASELINE_COMMIT_KEY) or b"").decode().strip()
        if body is None:
            return None, commit
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(body)
        return dest, commit

    def supports(self, word: str) -> bool:
        """Whether ``evalgate run --help`` mentions an optional flag or tier (the CLI grows across releases)."""
        if self._help is None:
            result = self.runner(
                [sys.executable, "-m", "evalgate", "run", "--help"],
                capture_output=True,
                text=True,
                check=False,
                env=self._env(),
            )
            self._help = result.stdout or ""
        return word in self._help

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in ["lambdas", env.get("PYTHONPATH", "")] if p)
        env.update(extra or {})
        return env

    def command(self, tier: str, baseline: Path | None) -> list[str]:
        c = self.cfg
        cmd = [
            sys.executable,
            "-m",
            "evalgate",
            "run",
            "--tier",
            tier,
            "--golden",
            c.golden,
            "--config",
            c.config,
            "--candidate",
            "bedrock",
            "--out",
            str(self.out_dir),
            "--embedder",
            "titan",
            "--no-progress",
            "--cache-s3",
            f"s3://{c.bucket}/{c.cache_key}",
        ]
        if c.generator:
            cmd += ["--model", c.generator]
        if c.prompt:
            cmd += ["--prompt", c.prompt]
        if baseline is not None:
            cmd += ["--baseline", str(baseline)]
            # The pipeline picks the last approved baseline; a change to the golden set or the gate config can't be
            # compared with it, so a person decides (REVIEW waits for the manual approval) instead of exit 2.
            if self.supports("--baseline-mismatch"):
                cmd += ["--baseline-mismatch", "review"]
        if c.max_cost and self.supports("--max-cost"):
            cmd += ["--max-cost", c.max_cost]
        if c.shard:
            cmd += ["--shard", c.shard]
        tickets = c.extra.get("tickets", "none")
        if tickets != "none" and not c.shard and self.supports("--tickets"):
            cmd += ["--tickets", tickets]
            if tickets == "github":
                cmd += [
                    "--github-repo",
                    c.extra.get("github_repo", ""),
                    "--github-token-secret",
                    c.extra.get("github_token_secret", ""),
                ]
        return cmd

    def calibrate_commands(self, tier: str) -> list[list[str]]:
        """``evalgate calibrate --metric judge --if-needed`` for each judge the tier may use: the cheap judge (and the
        heavy one, which re-judges borderline cases) for auto/full/smoke, the heavy judge for release."""
        c = self.cfg
        base = [
            sys.executable,
            "-m",
            "evalgate",
            "calibrate",
            "--metric",
            "judge",
            "--if-needed",
            "--records",
            str(CALIBRATION_DIR),
            "--golden",
            c.golden,
            "--config",
            c.config,
            "--no-cache",
        ]
        heavy = [*base, "--heavy"]
        return [heavy] if tier == "release" else [base, heavy]

    def fetch_records(self) -> list[str]:
        """The calibration records kept in S3, into CALIBRATION_DIR (names as stored)."""
        CALIBRATION_DIR.mkdir(parents=True, exist_ok=True)
        names = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.cfg.bucket, Prefix=CALIBRATION_PREFIX)
        for page in pages:
            for obj in page.get("Contents", []):
                name = obj["Key"][len(CALIBRATION_PREFIX) :]
                body = self._get(obj["Key"]) if name and "/" not in name else None
                if body is not None:
                    (CALIBRATION_DIR / name).write_bytes(body)
                    names.append(name)
        return names

    def recalibrate(self, tier: str) -> int:
        """Before the eval uses a judge: a judge without a valid record (first run, new model, changed rubric) is
        measured now (costed, capped by [judge_calibration] max_cost_usd); new records are stored beside the
        approved baselines. Non-zero: the judge fell short of the floors (1) or could not be measured (4), and the
        approval is rejected with the figures."""
        if not self.supports("--calibration"):
            return PASS  # an evalgate without calibration records
        known = set(self.fetch_records())
        code = PASS
        for cmd in self.calibrate_commands(tier):
            print("gate_step:", " ".join(cmd), flush=True)
            done = self.runner(cmd, check=False, env=self._env(), capture_output=True, text=True)
            output = (done.stdout or "") + (getattr(done, "stderr", "") or "")
            print(output, end="", flush=True)
            if done.returncode != PASS:
                self.resolve_approval(
                    "Rejected", f"judge calibration failed (exit {done.returncode}): " + " ".join(output.split())[-400:]
                )
                code = done.returncode if done.returncode in (FAIL, ERROR) else ERROR
                break
        spent = 0.0
        for path in sorted(CALIBRATION_DIR.glob("judge-*.json")):
            if path.name not in known:  # a new measurement (kept even when it falls short: it is the evidence)
                self.s3.put_object(
                    Bucket=self.cfg.bucket,
                    Key=CALIBRATION_PREFIX + path.name,
                    Body=path.read_bytes(),
                    ContentType="application/json",
                )
                spent += record_cost(path)
        if spent:
            self.put_cost(spent, "CalibrationCostUSD")
        return code

    def merge_command(self, shards: list[Path], baseline: Path | None) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "evalgate",
            "merge",
            *map(str, shards),
            "--config",
            self.cfg.config,
            "--out",
            str(self.out_dir),
        ]
        if baseline is not None:
            cmd += ["--baseline", str(baseline)]
        return cmd

    # -- outputs

    def upload_reports(self) -> list[str]:
        uploaded = []
        for name in REPORT_FILES:
            path = self.out_dir / name
            if path.is_file():
                key = f"{self.cfg.run_prefix}{name}"
                self.s3.put_object(
                    Bucket=self.cfg.bucket,
                    Key=key,
                    Body=path.read_bytes(),
                    ContentType=CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                )
                uploaded.append(key)
        return uploaded

    def refresh_history(self) -> None:
        """Rebuild the history site (every run under runs/) with this run in it; best effort, never the verdict."""
        if not self.supports_command("history"):
            return
        cmd = [
            sys.executable,
            "-m",
            "evalgate",
            "history",
            "--runs",
            f"s3://{self.cfg.bucket}/runs/",
            "--out",
            f"s3://{self.cfg.bucket}/{HISTORY_PREFIX}",
        ]
        done = self.runner(cmd, check=False, env=self._env())
        if done.returncode != 0:
            print(
                f"gate_step: the history site was not refreshed (evalgate history exit {done.returncode})",
                file=sys.stderr,
            )

    def supports_command(self, command: str) -> bool:
        done = self.runner(
            [sys.executable, "-m", "evalgate", "--help"], capture_output=True, text=True, check=False, env=self._env()
        )
        return command in (done.stdout or "")

    def read_results(self) -> dict[str, Any]:
        path = self.out_dir / "results.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def summary(self) -> str:
        try:
            return (self.out_dir / "summary.md").read_text(encoding="utf-8")
        except OSError:
            return "(no summary.md was written)"

    def publish(self, subject: str, body: str) -> None:
        self.sns.publish(TopicArn=self.cfg.topic_arn, Subject=subject[:SNS_SUBJECT_MAX], Message=body[:SNS_MESSAGE_MAX])

    def review_event(self, results: dict[str, Any]) -> dict[str, Any] | None:
        """The notifier's ``EvalGate Verdict`` detail (``evalgate.contracts.events.gate_event_detail``), or None."""
        try:
            from evalgate.contracts.events import gate_event_detail
            from evalgate.core.results import RunResult

            run = RunResult.model_validate(results)
            detail: dict[str, Any] = gate_event_detail(
                run, report_url=self.cfg.report_link(), pipeline=self.cfg.pipeline, execution_id=self.cfg.execution_id
            )
            return detail
        except Exception as exc:  # an older/newer results.json, evalgate not importable: fall back to SNS
            print(f"gate_step: cannot build the review event ({type(exc).__name__}: {exc}); emailing directly")
            return None

    def send_review(self, results: dict[str, Any], fallback_subject: str, fallback_body: str) -> str:
        detail = self.review_event(results) if self.events is not None else None
        if detail is not None:
            from evalgate.contracts.events import GATE_DETAIL, GATE_SOURCE  # importable: the detail was built

            try:
                sent = self.events.put_events(
                    Entries=[
                        {
                            "Source": GATE_SOURCE,
                            "DetailType": GATE_DETAIL,
                            "Detail": json.dumps(detail),
                        }
                    ]
                )
                if not sent.get("FailedEntryCount"):
                    return "event"
                print(f"gate_step: EventBridge refused the review event: {sent.get('Entries')}")
            except Exception as exc:
                print(f"gate_step: PutEvents failed ({type(exc).__name__}: {exc}); emailing directly")
        self.publish(fallback_subject, fallback_body)
        return "sns"

    def put_cost(self, cost: float | None, metric: str = "EvalCostUSD") -> None:
        if cost is None:
            return
        self.cloudwatch.put_metric_data(
            Namespace=self.cfg.namespace,
            MetricData=[
                {
                    "MetricName": metric,
                    "Value": cost,
                    "Unit": "None",
                    "Dimensions": [{"Name": "Pipeline", "Value": self.cfg.pipeline}],
                }
            ],
        )

    def approval_token(self, attempts: int = 40, delay: float = 3.0) -> str | None:
        """The token of this stage's manual approval once CodePipeline has started it (same run order) -- only
        while the stage runs THIS execution (``stageStates[].latestExecution.pipelineExecutionId``): with two
        executions in flight the waiting approval may belong to the other one, and its token must not be used."""
        for _ in range(attempts):
            state = self.codepipeline.get_pipeline_state(name=self.cfg.pipeline)
            for stage in state.get("stageStates", []):
                if stage.get("stageName") != self.cfg.stage:
                    continue
                running = (stage.get("latestExecution") or {}).get("pipelineExecutionId")
                if running != self.cfg.execution_id:
                    continue
                for action in stage.get("actionStates", []):
                    latest = action.get("latestExecution", {})
                    if action.get("actionName") == self.cfg.approval_action and latest.get("status") == "InProgress":
                        token = latest.get("token")
                        if token:
                            return str(token)
            self.sleep(delay)
        return None

    def resolve_approval(self, status: str, summary: str) -> bool:
        token = self.approval_token()
        if token is None:
            print(f"gate_step: approval {self.cfg.stage}/{self.cfg.approval_action} is not waiting; nothing to resolve")
            return False
        self.codepipeline.put_approval_result(
            pipelineName=self.cfg.pipeline,
            stageName=self.cfg.stage,
            actionName=self.cfg.approval_action,
            result={"summary": summary[:APPROVAL_SUMMARY_MAX], "status": status},
            token=token,
        )
        return True

    # -- commands

    def _guarded(self, what: str, work: Callable[[], int]) -> int:
        """Never leave the approval waiting on a crash: an unexpected error rejects it, then fails the action."""
        try:
            return work()
        except Exception as exc:
            try:
                self.resolve_approval("Rejected", f"{what} crashed: {type(exc).__name__}: {exc}")
            finally:
                print(f"gate_step: {what} crashed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return ERROR

    def run(self) -> int:
        return self._guarded("evalgate gate step", self._run)

    def _run(self) -> int:
        code, tier = self._evaluate()
        return code if tier is None else self._finish(code, tier)

    def _evaluate(self) -> tuple[int, str | None]:
        """Steps 1-3 (tier, judge calibration, baseline, the evalgate run): its exit code and tier, or the
        calibration's failing code and no tier when the run must not start."""
        tier = self.tier()
        calibrated = self.recalibrate(tier)
        if calibrated != PASS:
            return calibrated, None
        baseline, base_commit = self.fetch_baseline(Path(".evalgate") / "baseline.json")
        extra = {"EVALGATE_BASE_COMMIT": base_commit} if base_commit else {}
        if self.supports("--calibration"):
            extra["EVALGATE_CALIBRATION_DIR"] = str(CALIBRATION_DIR)
        cmd = self.command(tier, baseline)
        print("gate_step:", " ".join(cmd), flush=True)
        code = self.runner(cmd, check=False, env=self._env(extra)).returncode
        return code, tier

    def shard(self) -> int:
        """One shard build of the batch: evaluate shard k/N and upload its results.json for the merge build."""
        return self._guarded(f"evalgate shard {self.cfg.shard}", self._shard)

    def _shard(self) -> int:
        c = self.cfg
        index = shard_index(c.shard)
        code, tier = self._evaluate()
        if tier is None:
            return code
        results = self.out_dir / "results.json"
        if results.is_file():
            self.s3.put_object(
                Bucket=c.bucket, Key=c.shard_key(index), Body=results.read_bytes(), ContentType="application/json"
            )
        if code in (USAGE, ERROR) or not results.is_file() or code not in VERDICTS:
            verdict = VERDICTS.get(code, f"ERROR (exit {code})")
            self.resolve_approval(
                "Rejected",
                f"evalgate shard {c.shard} {verdict} (exit {code}), tier {tier}; the shards cannot be merged",
            )
            print(f"gate_step: shard {c.shard}: {verdict} (evalgate exit {code}); approval rejected", flush=True)
            return code or ERROR
        print(
            f"gate_step: shard {c.shard} done (evalgate exit {code}); results at s3://{c.bucket}/{c.shard_key(index)}",
            flush=True,
        )
        return PASS

    def merge(self) -> int:
        """The merge build of the batch (after every shard): gate the union, then act like ``run``."""
        return self._guarded("evalgate merge", self._merge)

    def _merge(self, shard_dir: Path = SHARD_DIR) -> int:
        c = self.cfg
        if c.shard_count < 1:
            raise ValueError("SHARD_COUNT must be the number of shards (>= 1)")
        tier = self.tier()
        baseline, _ = self.fetch_baseline(Path(".evalgate") / "baseline.json")
        shard_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for index in range(1, c.shard_count + 1):
            body = self._get(c.shard_key(index))
            if body is None:
                raise FileNotFoundError(f"s3://{c.bucket}/{c.shard_key(index)} (shard {index}/{c.shard_count})")
            path = shard_dir / f"{index}.json"
            path.write_bytes(body)
            files.append(path)
        cmd = self.merge_command(files, baseline)
        print("gate_step:", " ".join(cmd), flush=True)
        code = self.runner(cmd, check=False, env=self._env()).returncode
        return self._finish(code, tier)

    def _finish(self, code: int, tier: str) -> int:
        """Reports to S3, cost metric, notifications and the approval, from evalgate's exit code."""
        c = self.cfg
        decision = decide(code)
        self.upload_reports()
        results = self.read_results()
        self.put_cost(run_cost(results))
        self.refresh_history()
        links = (
            f"Report: {c.report_link()}\nAll files: {c.runs_link()}\nHistory of runs: {c.history_link()}\n"
            f"Pipeline / approval: {c.approval_link()}\n"
        )
        head = f"{c.pipeline} @ {c.commit[:12] or 'unknown commit'} (tier {tier}, execution {c.execution_id})"
        if decision.notify:
            self.send_review(
                results,
                f"[EvalGate] REVIEW needed: {c.pipeline}",
                f"The quality gate needs a human decision for {head}.\nApprove or reject the "
                f"'{c.approval_action}' action in stage '{c.stage}'.\n\n{links}\n{self.summary()}",
            )
        found = hallucinations(results)
        if decision.verdict == "PASS" and found:
            lines = "\n".join(
                f"- {h.get('case_id', '?')} ({h.get('suite', '?')}): {'; '.join(map(str, h.get('claims') or []))[:300]}"
                for h in found[:20]
            )
            self.publish(
                f"[EvalGate] PASS with {len(found)} hallucination(s): {c.pipeline}",
                f"The gate passed {head}, but the judge flagged unsupported claims. Please review:\n{lines}\n\n{links}",
            )
        if decision.approval is not None:
            self.resolve_approval(
                decision.approval, f"evalgate {decision.verdict} (exit {code}), tier {tier}. Report: {c.report_link()}"
            )
        print(
            f"gate_step: verdict {decision.verdict} (evalgate exit {code}); reports under "
            f"s3://{c.bucket}/{c.run_prefix}",
            flush=True,
        )
        return decision.exit_code

    def promote(self) -> int:
        c = self.cfg
        key = f"{c.run_prefix}results.json"
        body = self._get(key)
        if body is None:
            print(f"gate_step: s3://{c.bucket}/{key} not found; nothing to promote", file=sys.stderr)
            return ERROR
        self.s3.put_object(Bucket=c.bucket, Key=BASELINE_KEY, Body=body, ContentType="application/json")
        self.s3.put_object(
            Bucket=c.bucket, Key=BASELINE_COMMIT_KEY, Body=(c.commit or "").encode(), ContentType="text/plain"
        )
        print(f"gate_step: promoted {key} (commit {c.commit or 'unknown'}) to the approved baseline")
        return PASS


def shard_index(shard: str) -> int:
    """``"k/N"`` -> k (1 <= k <= N)."""
    k, sep, n = shard.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise ValueError(f"SHARD must look like k/N with 1 <= k <= N (got {shard!r})")
    return int(k)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in {"run", "shard", "merge", "promote"}:
        print("usage: evalgate ci run|shard|merge|promote", file=sys.stderr)
        return USAGE
    import boto3

    cfg = GateEnv.from_environ()
    session = boto3.session.Session(region_name=cfg.region)
    gate = Gate(
        cfg,
        session.client("s3"),
        session.client("sns"),
        session.client("codepipeline"),
        session.client("cloudwatch"),
        events=session.client("events"),
        out_dir=SHARD_OUT_DIR if args[0] == "shard" else OUT_DIR,
    )
    return {"run": gate.run, "shard": gate.shard, "merge": gate.merge, "promote": gate.promote}[args[0]]()


if __name__ == "__main__":
    raise SystemExit(main())
