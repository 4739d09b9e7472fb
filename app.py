#!/usr/bin/env python3
"""CDK entry point: typed settings from the context -> the release pipeline (and an optional dev service stack).

npx cdk synth                      # offline, no asset bundling
npx cdk deploy -c bundle=true EvalGatePipeline
"""

from __future__ import annotations

import sys

from aws_cdk import App

from stacks.application import build
from stacks.settings import SettingsError


def main() -> None:
    app = App()
    try:
        build(app)
    except SettingsError as exc:
        print(f"evalgate: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    app.synth()


if __name__ == "__main__":
    main()
