"""`empire policy validate` on each kind of bad policy: one `file:line: path: message` line per
error, the exact path and line of each, exit status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from empire.cli import main

TARGET = """targets:
  - name: api
    workload: {name: api}
    max_replicas: 10
    signals:
      - {name: cpu, query: 'avg(cpu)', target: 0.7}
"""

# name -> (policy text, [(line, path)] expected in order)
BAD_EXAMPLES: dict[str, tuple[str, list[tuple[int, str]]]] = {
    "unknown route receiver": (
        "alerting:\n  receivers: [{name: d, dashboard: {}}]\n  route:\n    receiver: d\n    routes: [{receiver: dd}]\n",
        [(5, "alerting.route.routes[0].receiver")],
    ),
    "unknown providers": (
        "providers:\n  - {name: music, accounts: [{name: a}]}\npersonas:\n"
        "  - name: p\n    genres: [x]\n    providers:\n      - musik\n      - voice\n",
        [(7, "personas[0].providers[0]"), (8, "personas[0].providers[1]")],
    ),
    "target cross-field": (
        TARGET + "    predictive: {signal: cpuu}\n    pin_replicas: 11\n",
        [(7, "targets[0].predictive.signal"), (8, "targets[0].pin_replicas")],
    ),
    "wrong shapes": (
        "budget: 5\nproviders:\n  - name: m\n    accounts:\n      - {name: a, api_key: sk-123}\n"
        "personas:\n  - {name: p, genres: rock, providers: [m]}\n",
        [(5, "providers[0].accounts[0].api_key"), (1, "budget"), (7, "personas[0].genres")],
    ),
    "tiers in one directory": (
        "storage:\n  tiers:\n    - {name: hot, cost_per_gb_month: 1, root: /srv/empire}\n"
        "    - name: warm\n      cost_per_gb_month: 1\n      enter_when: {idle_days: 30}\n      root: /srv/empire/\n"
        "    - {name: cold, cost_per_gb_month: 1, enter_when: {idle_days: 90}, root: /srv/empire/cold}\n",
        [(7, "storage.tiers[1].root"), (8, "storage.tiers[2].root"), (8, "storage.tiers[2].root")],
    ),
}


@pytest.mark.parametrize("name", list(BAD_EXAMPLES))
def test_validate_prints_one_located_line_per_error_and_exits_2(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD_EXAMPLES[name]
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    assert main(["policy", "validate", str(f)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    got = []
    for line in lines:
        where, path, message = line.split(": ", 2)
        source, lineno = where.rsplit(":", 1)
        assert source == str(f) and message.strip(), line
        got.append((int(lineno), path))
    assert got == expected, lines
    assert "sk-123" not in captured.err
