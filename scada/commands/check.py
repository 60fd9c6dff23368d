"""``scada check [CONFIG]``: validate a site configuration, or write its JSON Schema.

Exit 0 and a one-line summary on stdout when the configuration is valid; exit 1 and every
problem as ``file:line:col: field.path: message`` on stderr otherwise. Warnings (a secret
written inline instead of ``${NAME}`` / ``${file:/path}``) go to stderr in the same form and
do not fail the check. ``--json`` prints ``{"ok", "summary", "errors", "warnings"}`` on stdout
instead. Expanded secrets are never printed. ``--schema`` writes the JSON Schema of
the configuration (for editor completion) to stdout or ``--output``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from scada.cli import DEFAULT_CONFIG

    parser = sub.add_parser(
        "check",
        help="validate a site configuration (or write its JSON Schema)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "config",
        nargs="?",
        default=DEFAULT_CONFIG,
        help=f"site configuration (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument(
        "--schema", action="store_true", help="write the JSON Schema of a site configuration"
    )
    parser.add_argument("-o", "--output", help="file for --schema (default: stdout)")
    parser.set_defaults(func=run)


def schema() -> dict[str, Any]:
    """Return the JSON Schema of a site configuration file."""
    from scada.config import SiteConfig

    doc = SiteConfig.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "SCADA site configuration"
    return doc


def run(args: argparse.Namespace) -> int:
    if args.schema:
        text = json.dumps(schema(), indent=2) + "\n"
        if args.output:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text)
        else:
            sys.stdout.write(text)
        return 0

    from scada.config import ConfigError, ConfigIssue, load_site

    try:
        cfg = load_site(args.config)
    except FileNotFoundError:
        issues = [ConfigIssue(args.config, 1, 1, "(root)", "file not found")]
    except ConfigError as exc:
        issues = exc.issues
    else:
        summary = cfg.summary()
        warnings = cfg.warnings()
        if args.json:
            doc = {
                "ok": True,
                "summary": summary,
                "errors": [],
                "warnings": [w.to_json() for w in warnings],
            }
            print(json.dumps(doc))
        else:
            for warning in warnings:
                print(warning, file=sys.stderr)
            counts = " ".join(f"{name}={n}" for name, n in summary.items())
            print(f"{args.config}: ok: {counts}")
        return 0
    if args.json:
        errors = [i.to_json() for i in issues]
        print(json.dumps({"ok": False, "summary": {}, "errors": errors, "warnings": []}))
    else:
        for issue in issues:
            print(issue, file=sys.stderr)
        print(
            f"{args.config}: {len(issues)} error{'s' if len(issues) != 1 else ''}", file=sys.stderr
        )
    return 1
