"""tools/election_scale.py: the scaling table of docs/scaling.md comes out whole and deterministic."""

from __future__ import annotations

import json

from tools.election_scale import ALGORITHMS, main


def test_the_table_has_a_cell_per_algorithm_and_size_and_replays_exactly(capsys) -> None:
    main(["--runs", "1", "--sizes", "3,9", "--json"])
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    main(["--runs", "1", "--sizes", "3,9", "--json"])
    second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(c["algorithm"], c["nodes"]) for c in first] == [(a, n) for a in ALGORITHMS for n in (3, 9)]
    for cell in first:
        assert 0 < cell["start_median_s"] <= cell["start_max_s"] and 0 < cell["failover_median_s"]
        assert 0 < cell["messages_per_node_per_s"] <= cell["busiest_node_per_s"]
    drop_wall = [{k: v for k, v in c.items() if k != "wall_s"} for c in first]
    assert drop_wall == [{k: v for k, v in c.items() if k != "wall_s"} for c in second]
