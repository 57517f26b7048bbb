"""Tests of the harness's own parts, no servers needed: the sink's counting, the figures drawn from
the load generator's times, the payloads, and the py-spy summary. Run with
`.venv/bin/python -m pytest bench/test_harness.py -q` (not part of `make test`).
"""

from __future__ import annotations

import http.client
from pathlib import Path

from bench.measure import analyse, summary_ms
from bench.payloads import check
from bench.profile import summarise
from bench.report import render
from bench.sink import Sink


def _post(port: int, key: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", "/records", body=b"{}", headers={"Idempotency-Key": key} if key else {})
    status = conn.getresponse().status
    conn.close()
    return status


def test_sink_counts_unique_keys_duplicates_and_refusals(tmp_path: Path) -> None:
    sink = Sink(tmp_path)
    try:
        assert [_post(sink.port, k) for k in ("a/sink", "b/sink", "a/sink")] == [200, 200, 200]
        sink.fail(503)
        assert _post(sink.port, "c/sink") == 503
        sink.fail(0)
        stats = sink.stats()
        assert (stats["unique"], stats["duplicates"], stats["refused"]) == (2, 1, 1)
        assert set(sink.arrivals()) == {"a/sink", "b/sink"}
    finally:
        sink.stop()


def test_latency_percentiles_are_nearest_rank_in_milliseconds() -> None:
    figures = summary_ms([i / 1000 for i in range(1, 101)])
    assert (figures["p50"], figures["p90"], figures["p99"], figures["max"]) == (50.0, 90.0, 99.0, 100.0)


def test_end_to_end_latency_counts_from_when_a_request_was_due() -> None:
    load = {"count": 3, "mode": "rate", "rate": 10.0, "connections": 1, "body_bytes_mean": 1000.0,
            "due": [0.0, 0.1, 0.2], "sent": [0.0, 0.3, 0.3], "done": [0.01, 0.31, 0.32],
            "status": [202, 202, 422], "reference": ["R1", "R2", ""], "errors": {"HTTP 422": 1}}
    result = analyse(load, {"R1/sink": 0.05, "R2/sink": 0.5})
    assert result["intake"]["accepted"] == 2
    assert result["intake"]["latency_ms"]["max"] == 210.0  # 0.31 s done - 0.1 s due
    assert result["end_to_end"] == {**result["end_to_end"], "completed": 2, "missing": 0}
    assert result["end_to_end"]["latency_ms"]["max"] == 400.0


def test_payloads_are_valid_and_about_one_kilobyte() -> None:
    invalid, mean_size = check(300)
    assert invalid == 0
    assert 900 <= mean_size <= 1100


def test_profile_summary_charges_samples_to_the_library_doing_the_work(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "run (/x/hub/worker.py:1);execute (/x/site-packages/sqlalchemy/engine/base.py:2);"
        "recv (/usr/lib/python3.11/socket.py:3) 3\n"
        "run (/x/hub/worker.py:1);send (/x/site-packages/httpx/_client.py:4) 1\n"
    )
    summary = summarise(raw)
    assert summary["samples"] == 4
    assert summary["by_library_percent"] == [["sqlalchemy", 75.0], ["httpx", 25.0]]


def test_upload_files_are_noise_photos_with_exif_and_pdfs_of_the_size_asked() -> None:
    import io
    import zlib

    from PIL import Image

    from bench.uploads import MB, bound_kb, files, working_set
    from hub.attachments.inspect import sniff

    photo, pdf = files(2, MB)
    assert (sniff(photo.data[:8192]), sniff(pdf.data[:8192])) == ("image/jpeg", "application/pdf")
    assert 0.8 * MB <= len(photo.data) <= 1.2 * MB and abs(len(pdf.data) - MB) < 1000
    assert Image.open(io.BytesIO(photo.data)).getexif()[0x010F] == "BenchPhone"
    assert len(zlib.compress(photo.data)) > 0.95 * len(photo.data)  # noise: it does not compress
    assert bound_kb([photo, pdf], 1000, threads=1) == 1000 + (working_set(photo) + 64 * 1024 * 1024) // 1024


def _burst(e2e: float, rabbit_cpu: float, rabbit_bytes: int, members: int | None) -> dict[str, object]:
    groups = {"hub api": 2.0, "hub workers": 3.0, "postgresql": 1.5, "rabbitmq": rabbit_cpu}
    result: dict[str, object] = {
        "intake": {"offered": 1000, "accepted": 1000, "per_second": e2e + 10, "latency_ms": {"p99": 20.0}},
        "end_to_end": {"completed": 1000, "missing": 0, "per_second": e2e, "latency_ms": {"p99": 90.0}},
        "sink": {"duplicates": 0},
        "resources": {"groups": {g: {"cpu_seconds": v} for g, v in groups.items()}, "other_cpu_seconds": 0.4},
        "written": {"rabbitmq_bytes_per_submission": rabbit_bytes, "wal_bytes_per_submission": 4700},
        "load_average_at_start": [1.5, 1.0, 0.5], "cpu_check_ms": 17.0,
    }
    if members:
        result["rabbitmq"] = {"nodes": members, "leader": "hubcluster1-ab@localhost",
                              "members": [f"hubcluster{i}-ab@localhost" for i in range(1, members + 1)]}
    return result


def test_report_sets_the_single_node_burst_beside_the_three_node_clusters() -> None:
    results = {"hub-burst": _burst(900.0, 0.5, 600, None), "hub-burst-rabbitmq-3": _burst(600.0, 2.0, 1800, 3)}
    text = render(results, {"argv": [], "rabbitmq_nodes": 1, "rabbitmq_node_counts": [1, 3]})
    section = text.split("## RabbitMQ: single node vs 3-node cluster (burst of 1,000)", 1)[1].split("\n## ", 1)[0]
    cells = [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    rows = {row[0]: row[1:] for row in cells}
    assert rows["figure"] == ["single node", "3-node cluster", "3-node cluster / single node"]
    assert rows["end-to-end completions/s"] == ["900", "600", "0.67×"]
    # all-in CPU: api 2 + workers 3 + PostgreSQL 1.5 + RabbitMQ (every node) over 1,000 delivered
    assert rows["CPU ms per submission incl. RabbitMQ (all its nodes) + PostgreSQL"] == ["7.00", "8.50", "1.21×"]
    assert rows["RabbitMQ disk bytes per submission (all its nodes)"] == ["600", "1,800", "3.00×"]
    assert rows["duplicates / lost at the sink"] == ["0 / 0", "0 / 0", "–"]
    assert rows["quorum queue replicated on"] == ["1 (one node)", "3 of 3 nodes, leader hubcluster1-ab", "–"]


def test_a_single_broker_run_has_no_node_comparison() -> None:
    text = render({"hub-burst": _burst(900.0, 0.5, 600, None)}, {"argv": [], "rabbitmq_nodes": 1,
                                                                   "rabbitmq_node_counts": [1]})
    assert "## The hub under load" in text
    assert "## RabbitMQ:" not in text
