"""`python -m bench.uploads`: 100 uploads of 5 MB at once to `POST /v1/attachments` on a real
`hub api` process (issue 16): durable PostgreSQL, the filesystem store, clamd if installed.
Half are JPEG photos of random-noise pixels with EXIF (they do not compress), half 5 MB PDFs.
Prints wall time, uploads/s, MB/s, latency, every status code and the api's peak RSS (VmHWM)
before and after, against the memory bound the code should keep; writes bench/results/uploads-<UTC>/.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.measure import summary_ms  # noqa: E402
from bench.processes import Group, Meter, status_kb, stop, stop_all  # noqa: E402

MB = 1_000_000
# anyio's default thread limiter, which starlette's run_in_threadpool (the upload route) uses:
# at most this many uploads are being stored, cleaned and scanned at one moment
THREADS = 40
# interpreter, allocator arenas and buffers that are not one upload's
SLACK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes
    media_type: str
    # decoded RGB bytes of a photo (width x height x 3), 0 for a PDF
    pixel_bytes: int = 0


def noise_photo(target_bytes: int, seed: int) -> Upload:
    """A JPEG of about `target_bytes` whose pixels are random (so they do not compress), with
    EXIF: camera, time and a GPS position, as a phone writes them."""
    from PIL import Image

    def encoded(width: int, height: int) -> bytes:
        pixels = Image.frombytes("RGB", (width, height), _noise(width * height * 3, seed))
        exif = Image.Exif()
        exif[0x010F], exif[0x0110], exif[0x0132] = "BenchPhone", "Noise 5", "2026:12:01 09:30:00"  # Make, Model, DateTime
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2], gps[3], gps[4] = "N", (53.0, 30.0, 12.5), "W", (1.0, 15.0, 30.0)
        out = io.BytesIO()
        pixels.save(out, format="JPEG", quality=90, exif=exif)
        return out.getvalue()

    # noise at quality 90 costs a near-constant number of bytes per pixel: measure it, then size to it
    probe = encoded(400, 300)
    per_pixel = len(probe) / (400 * 300)
    width = int((target_bytes / per_pixel * 4 / 3) ** 0.5)
    height = width * 3 // 4
    data = encoded(width, height)
    return Upload(f"photo-{seed:03d}.jpg", data, "image/jpeg", width * height * 3)


def noise_pdf(target_bytes: int, seed: int) -> Upload:
    """A well-formed one-page PDF of `target_bytes`, most of it an incompressible embedded stream."""
    head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>"]
    body = bytearray(head)
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    tail_room = 300  # the stream object's own lines, the xref table and the trailer
    payload = _noise(max(0, target_bytes - len(body) - tail_room), seed)
    offsets.append(len(body))
    body += b"4 0 obj\n<< /Length %d >>\nstream\n" % len(payload) + payload + b"\nendstream\nendobj\n"
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(offsets) + 1, xref)
    return Upload(f"drawing-{seed:03d}.pdf", bytes(body), "application/pdf")


def _noise(size: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


def files(count: int, size: int) -> list[Upload]:
    """`count` distinct files, photos and PDFs alternating (every one unique: no shared blob)."""
    return [noise_photo(size, i) if i % 2 == 0 else noise_pdf(size, i) for i in range(count)]


def working_set(upload: Upload) -> int:
    """The most memory one upload may hold while it is stored, as hub.attachments.receive does it:
    a PDF is streamed in 64 KiB chunks (1 MiB allowed for buffers); a photo is read whole (the
    joined bytes and the list of chunks joined: 2 x size), decoded (pixels), copied out and into a
    new image (2 x pixels) and saved again (the encoder's buffer and its copy: 2 x size)."""
    if upload.pixel_bytes == 0:
        return 1024 * 1024
    return 4 * len(upload.data) + 3 * upload.pixel_bytes


def bound_kb(uploads: list[Upload], baseline_kb: int, threads: int = THREADS) -> int:
    """The api's peak RSS should stay under: its baseline, plus the largest working sets of as many
    uploads as the thread pool runs at once, plus slack. It must not grow with the number sent."""
    largest = sorted((working_set(u) for u in uploads), reverse=True)[:threads]
    return baseline_kb + (sum(largest) + SLACK_BYTES) // 1024


async def send_all(url: str, key: str, uploads: list[Upload], timeout: float) -> list[dict[str, Any]]:
    """Every upload at once, each on its own connection; times from the moment all were due."""
    import httpx

    limits = httpx.Limits(max_connections=len(uploads), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(timeout, connect=30)) as client:
        t0 = time.perf_counter()

        async def one(upload: Upload) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {key}", "X-Filename": upload.name,
                       "Content-Type": "application/octet-stream"}
            try:
                answer = await client.post("/v1/attachments", content=upload.data, headers=headers)
                status, body = answer.status_code, answer.json() if answer.status_code == 201 else {"text": answer.text[:300]}
            except httpx.HTTPError as error:
                status, body = 0, {"text": f"{type(error).__name__}: {error}"}
            return {"name": upload.name, "status": status, "seconds": time.perf_counter() - t0, "body": body}

        return await asyncio.gather(*(one(u) for u in uploads))


def run(opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    from bench.hubproc import HubStack
    from tests.support.servers import PostgresServer, close_all

    clamd = None
    data_dir = Path(tempfile.mkdtemp(prefix="hub-bench-uploads-"))
    postgres = PostgresServer(durable=True)
    stack: HubStack | None = None
    try:
        print(f"bench.uploads: making {opts.uploads} files of {opts.mb:g} MB", flush=True)
        uploads = files(opts.uploads, int(opts.mb * MB))
        if opts.clamd:
            from tests.support.clamd import CLAMD, ClamdServer

            if Path(CLAMD).exists():
                clamd = ClamdServer(b"bench: a signature no upload matches")
            else:
                print("bench.uploads: clamd is not installed: files are stored unscanned", flush=True)
        postgres.start()
        # memory:// broker: an upload never touches the broker (the relay inside `hub api` idles)
        stack = HubStack(out, postgres, "memory://", "http://127.0.0.1:9", "uploads")
        stack.env["HUB_DATA_DIR"] = str(data_dir)
        stack.env["HUB_ATTACHMENT_STORE"] = "filesystem"
        if clamd is not None:
            stack.env["HUB_CLAMD_SOCKET"] = clamd.socket
        [url] = stack.start_apis(1)
        api = stack.apis[0].pid
        # one of each first, so the baseline has Pillow, the sealing and the scanner loaded
        warm = asyncio.run(send_all(url, stack.key, [noise_photo(MB, 900), noise_pdf(MB, 901)], opts.timeout))
        if any(w["status"] != 201 for w in warm):
            raise RuntimeError(f"warm-up uploads failed: {warm}")
        before = {"VmHWM_kb": status_kb(api, "VmHWM"), "VmRSS_kb": status_kb(api, "VmRSS")}
        groups = [Group("hub api", [api], reset=False), Group("postgresql", postgres.pids())]
        if clamd is not None and clamd.proc is not None:
            groups.append(Group("clamd", [clamd.proc.pid]))
        client_cpu = time.process_time()
        with Meter(groups, every=0.1) as meter:
            answers = asyncio.run(send_all(url, stack.key, uploads, opts.timeout))
        client_cpu = round(time.process_time() - client_cpu, 2)
        after = {"VmHWM_kb": status_kb(api, "VmHWM"), "VmRSS_kb": status_kb(api, "VmRSS")}
        resources = meter.result()
        # this process is the load: its CPU is the bench's own, not other engineers'
        resources["bench_client_cpu_seconds"] = client_cpu
        resources["other_cpu_seconds"] = round(max(0.0, resources["other_cpu_seconds"] - client_cpu), 2)
        wall = max(a["seconds"] for a in answers)
        sent = sum(len(u.data) for u in uploads)
        limit = bound_kb(uploads, before["VmRSS_kb"])
        scans = Counter(str(a["body"].get("scan")) for a in answers if a["status"] == 201)
        stored = sum(1 for p in (data_dir / "attachments").rglob("*") if p.is_file())
        photos = [u for u in uploads if u.pixel_bytes]
        result = {
            "uploads": len(uploads), "photos": len(photos), "pdfs": len(uploads) - len(photos),
            "mb_each": opts.mb, "bytes_sent": sent,
            "photo_size": f"{photos[0].pixel_bytes // 3:,} pixels, {len(photos[0].data):,} bytes" if photos else None,
            "scanned": "clamd (private, test signature database)" if clamd is not None else "no: clamd not configured, files stored unscanned",
            "scan_results": dict(scans), "stored_blobs": stored,
            "wall_seconds": round(wall, 2), "uploads_per_second": round(len(uploads) / wall, 2),
            "mb_per_second": round(sent / MB / wall, 1),
            "latency_ms": summary_ms([a["seconds"] for a in answers]),
            "status_codes": dict(Counter(str(a["status"]) for a in answers)),
            "failures": [{"name": a["name"], "status": a["status"], "body": a["body"]} for a in answers if a["status"] != 201][:10],
            "api_memory_kb": {"before": before, "after": after,
                              "growth_kb": after["VmHWM_kb"] - before["VmRSS_kb"],
                              "growth_kb_per_upload_in_flight": (after["VmHWM_kb"] - before["VmRSS_kb"]) // min(THREADS, len(uploads))},
            "bound": {"kb": limit, "threads": THREADS,
                      "why": (f"baseline RSS + the {min(THREADS, len(uploads))} largest per-upload working sets "
                              f"(at most {THREADS} uploads run at once in the thread pool; photo 4 x size + 3 x pixels, "
                              "PDF 1 MiB) + 64 MiB slack"),
                      "within": after["VmHWM_kb"] <= limit},
            "resources": resources,
            "load_average": os.getloadavg(),
        }
        return result
    finally:
        if stack is not None:
            for proc in stack.apis:
                stop(proc)
        stop_all()
        if clamd is not None:
            clamd.close()
        close_all()
        shutil.rmtree(data_dir, ignore_errors=True)


def render(r: dict[str, Any]) -> str:
    mem, bound = r["api_memory_kb"], r["bound"]
    lat = r["latency_ms"]
    return "\n".join([
        f"# {r['uploads']} uploads of {r['mb_each']:g} MB at once (`python -m bench.uploads`)", "",
        f"{r['photos']} JPEG photos (random-noise pixels with EXIF; {r['photo_size']}) and {r['pdfs']} PDFs, each on its own "
        f"connection, to one `hub api` on durable PostgreSQL with the filesystem store. Scanned: {r['scanned']}.", "",
        "| figure | value |", "|---|---|",
        f"| wall time | {r['wall_seconds']} s |",
        f"| uploads/s | {r['uploads_per_second']} |",
        f"| MB/s | {r['mb_per_second']} |",
        f"| latency p50 / p99 / max | {lat['p50']:,} / {lat['p99']:,} / {lat['max']:,} ms |",
        f"| status codes | {r['status_codes']} |",
        f"| scan results | {r['scan_results']} |",
        f"| api VmHWM before / after | {mem['before']['VmHWM_kb'] / 1024:,.0f} / {mem['after']['VmHWM_kb'] / 1024:,.0f} MiB |",
        f"| api peak growth over its RSS before | {mem['growth_kb'] / 1024:,.0f} MiB "
        f"({mem['growth_kb_per_upload_in_flight'] / 1024:,.1f} MiB per upload in flight) |",
        f"| bound | {bound['kb'] / 1024:,.0f} MiB: {bound['why']} |",
        f"| within the bound | {'yes' if bound['within'] else 'NO'} |",
        f"| CPU s: api / clamd / bench client / other (not the bench's) | {r['resources']['groups']['hub api']['cpu_seconds']} / "
        f"{r['resources']['groups'].get('clamd', {}).get('cpu_seconds', '-')} / {r['resources']['bench_client_cpu_seconds']} / "
        f"{r['resources']['other_cpu_seconds']} |",
        f"| load average (1, 5, 15 min) at the end | {', '.join(f'{x:.2f}' for x in r['load_average'])} |",
        "",
    ])


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.uploads", description=__doc__)
    p.add_argument("--uploads", type=int, default=100, help="files sent at once (half photos, half PDFs)")
    p.add_argument("--mb", type=float, default=5.0, help="size of each file, MB (10^6 bytes)")
    p.add_argument("--no-clamd", dest="clamd", action="store_false", help="do not start the tests' private clamd")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds each upload may take")
    p.add_argument("--out", type=Path, help="results folder (default bench/results/uploads-<UTC timestamp>)")
    opts = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    out = opts.out or REPO / "bench" / "results" / f"uploads-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    out.mkdir(parents=True, exist_ok=True)
    result = run(opts, out)
    (out / "uploads.json").write_text(json.dumps(result, indent=2))
    text = render(result)
    (out / "UPLOADS.md").write_text(text)
    print(text, flush=True)
    print(f"bench.uploads: results in {out}", flush=True)
    ok = result["status_codes"] == {"201": result["uploads"]} and result["bound"]["within"]
    if not ok:
        print("bench.uploads: FAILED: " + ("not every upload was 201; " if result["status_codes"] != {"201": result["uploads"]} else "")
              + ("the api's memory passed the bound" if not result["bound"]["within"] else ""), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
