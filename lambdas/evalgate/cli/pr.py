"""``evalgate comment``, ``evalgate pr-context`` and ``run --tickets``: verdicts where people work."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from evalgate.core.errors import InputError

EXIT_FORK = 2


def add_pr_commands(sub: Any) -> None:
    com = sub.add_parser(
        "comment",
        help="the pull-request comment for a results.json (print, write, or post it with a commit status)",
        description="Render the pull-request comment (verdict in words, regressions, baseline vs candidate answers, "
        "cost, report link) from a results.json; optionally post it: one comment per pull request, updated in "
        "place, plus a commit status on GitHub. Posting that fails is logged and never changes the exit code.",
    )
    com.add_argument("--results", type=Path, required=True, help="the run's results.json")
    com.add_argument("--baseline", type=Path, help="the approved baseline's results.json (baseline answers)")
    com.add_argument("--report-url", help="link to the full report")
    com.add_argument("--commit", help="the commit evaluated (default: the run's)")
    com.add_argument("--out", type=Path, help="write the Markdown here (default: print it)")
    com.add_argument("--post", choices=["none", "github", "codecommit"], default="none")
    com.add_argument("--repo", help="GitHub owner/name, or the CodeCommit repository name")
    com.add_argument("--pr", help="pull request number (GitHub: 'auto' finds it from --commit)")
    com.add_argument("--token-secret", help="Secrets Manager id of the GitHub token (else $GITHUB_TOKEN)")
    com.add_argument("--before-commit", help="CodeCommit: the destination commit")

    ctx = sub.add_parser(
        "pr-context",
        help="find the open pull request of a commit (GitHub) and refuse forks unless allowed",
        description="Print PR_NUMBER=<n> and PR_BASE=<branch> for the open pull request whose head is --commit. "
        "Exit 2 when there is none, or when it comes from a fork and --allow-forks is not given: a fork's code "
        "must not run with the pipeline's credentials.",
    )
    ctx.add_argument("--repo", required=True, help="GitHub owner/name")
    ctx.add_argument("--commit", required=True)
    ctx.add_argument("--token-secret", help="Secrets Manager id of the GitHub token (else $GITHUB_TOKEN)")
    ctx.add_argument("--allow-forks", action="store_true")


def github_client(repo: str | None, token_secret: str | None) -> Any:
    from evalgate.adapters.github import GitHubClient, token_from_secret

    if not repo:
        raise InputError.single("--repo", None, "name the GitHub repository as owner/name")
    token = token_from_secret(token_secret) if token_secret else os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise InputError.single("--token-secret", None, "no GitHub token: name its secret or set GITHUB_TOKEN")
    try:
        return GitHubClient(repo=repo, token=token)
    except ValueError as exc:
        raise InputError.single("--repo", None, str(exc)) from None


def _load(path: Path, flag: str) -> Any:
    from evalgate.core.results import load_result

    return load_result(path, f"{flag} results.json")


def run_pr_command(args: argparse.Namespace) -> int:
    if args.command == "pr-context":
        return _pr_context(args)
    return _comment(args)


def _pr_context(args: argparse.Namespace) -> int:
    from evalgate.adapters.github import GitHubError
    from evalgate.release.pull_request import NoPullRequest, github_pull_request

    client = github_client(args.repo, args.token_secret)
    try:
        info = github_pull_request(client, args.commit)
    except (NoPullRequest, GitHubError) as exc:
        print(f"evalgate: {exc}", file=sys.stderr)
        return EXIT_FORK
    if info.fork and not args.allow_forks:
        print(
            f"evalgate: pull request #{info.number} comes from a fork; its code is not evaluated "
            "(turn pull requests from forks on in the settings to allow it)",
            file=sys.stderr,
        )
        return EXIT_FORK
    print(f"PR_NUMBER={info.number}")
    print(f"PR_BASE={info.base_branch}")
    return 0


def _comment(args: argparse.Namespace) -> int:
    from evalgate.adapters.github import GitHubError
    from evalgate.release.pull_request import (
        NoPullRequest,
        comment_for,
        github_pull_request,
        post_codecommit,
        post_github,
    )

    result = _load(args.results, "--results")
    baseline = _load(args.baseline, "--baseline") if args.baseline else None
    commit = args.commit or result.commit
    body = comment_for(result, baseline, args.report_url, commit)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(body, encoding="utf-8")
    elif args.post == "none":
        print(body)
    if args.post == "github":
        if not commit:
            raise InputError.single("--commit", None, "the commit to set a status on is unknown")
        client = github_client(args.repo, args.token_secret)
        try:
            number = int(args.pr) if args.pr and args.pr != "auto" else github_pull_request(client, commit).number
        except ValueError:
            raise InputError.single("--pr", None, "must be a pull request number or 'auto'") from None
        except (NoPullRequest, GitHubError) as exc:
            print(f"evalgate: comment not posted: {exc}", file=sys.stderr)
            return 0
        for line in post_github(client, result, body, sha=commit, number=number, report_url=args.report_url):
            print(f"comment: {line}")
    elif args.post == "codecommit":
        missing = [
            f
            for f, v in (
                ("--repo", args.repo),
                ("--pr", args.pr),
                ("--before-commit", args.before_commit),
                ("--commit", commit),
            )
            if not v
        ]
        if missing:
            raise InputError.single(missing[0], None, "required with --post codecommit")
        from evalgate.adapters.aws import make_client

        for line in post_codecommit(
            make_client("codecommit"),
            body,
            repository=args.repo,
            pull_request_id=str(args.pr),
            before_commit=args.before_commit,
            after_commit=str(commit),
        ):
            print(f"comment: {line}")
    return 0


def tickets_for_run(args: argparse.Namespace, result: Any, config: Any) -> None:
    """``run --tickets``: open or count tickets for the run's known errors; maybe turn PASS into REVIEW."""
    from evalgate.release.tickets import GitHubTickets, OpsCenterTickets, apply_ticket_report, raise_tickets

    sink: Any
    if args.tickets == "github":
        sink = GitHubTickets(github_client(args.github_repo, args.github_token_secret))
    else:
        sink = OpsCenterTickets()
    context = {
        "commit": result.commit or "",
        "run": result.run_id,
        "candidate": str(result.candidate.get("name", "")),
        "report": os.environ.get("EVALGATE_REPORT_URL", ""),
    }
    report = raise_tickets(result, sink, context)
    for err in report.errors:
        print(f"evalgate: tickets: {err}", file=sys.stderr)
    apply_ticket_report(result, report, config.tickets.review_when_open_high_stakes)
