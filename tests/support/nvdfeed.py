"""A small NVD feed served on 127.0.0.1 the way vulnix downloads it, for the vulnix gate's tests.

Owns generating NVD JSON 1.1 feed files from a few made-up CVEs and serving
them over real HTTP. vulnix (1.10) fetches `<mirror>nvdcve-1.1-<year>.json.gz`
for each of the last six years, or `nvdcve-1.1-modified.json.gz` when its
cache is less than a week old (and nothing when it is less than two hours
old); it reads no `.meta` file. Every year file is served (empty unless a CVE
of that year exists), and `modified` holds every CVE.

    feed = [FeedCve("CVE-2026-0001", "openssl", version="1.1.1t", cvss_v3=9.8)]
    with NvdFeed.serving(feed) as nvd:
        vulnix --mirror {nvd.mirror} ...
        nvd.requests           # [(path, status), ...]
        nvd.fail_with = 500    # from now on every request fails

Must not: know anything about pullnix; reach the network.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/feeds/json/cve/1.1/"
_FILE = re.compile(r"^nvdcve-1\.1-(\d{4}|modified)\.json\.gz$")


@dataclass(frozen=True)
class FeedCve:
    """A made-up CVE for one product: at exactly `version`, or in [start_including,
    end_excluding) when `version` is None."""

    cve_id: str
    product: str
    version: str | None = None
    start_including: str | None = None
    end_excluding: str | None = None
    cvss_v3: float | None = None
    cvss_v2: float | None = None
    vendor: str = ""

    @property
    def year(self) -> str:
        return self.cve_id.split("-")[1]


def feed_item(cve: FeedCve) -> dict[str, object]:
    """One entry of `CVE_Items` in NVD JSON 1.1."""
    vendor = cve.vendor or cve.product
    match: dict[str, object] = {
        "vulnerable": True,
        "cpe23Uri": f"cpe:2.3:a:{vendor}:{cve.product}:{cve.version or '*'}:*:*:*:*:*:*:*",
        "cpe_name": [],
    }
    if cve.start_including:
        match["versionStartIncluding"] = cve.start_including
    if cve.end_excluding:
        match["versionEndExcluding"] = cve.end_excluding
    impact: dict[str, object] = {}
    if cve.cvss_v3 is not None:
        impact["baseMetricV3"] = {"cvssV3": {"version": "3.1", "baseScore": cve.cvss_v3}}
    if cve.cvss_v2 is not None:
        impact["baseMetricV2"] = {"cvssV2": {"version": "2.0", "baseScore": cve.cvss_v2}}
    return {
        "cve": {
            "data_type": "CVE",
            "data_format": "MITRE",
            "data_version": "4.0",
            "CVE_data_meta": {"ID": cve.cve_id, "ASSIGNER": "test@pullnix.invalid"},
            "description": {
                "description_data": [
                    {"lang": "en", "value": f"made-up vulnerability in {cve.product} for tests"}
                ]
            },
        },
        "configurations": {
            "CVE_data_version": "4.0",
            "nodes": [{"operator": "OR", "children": [], "cpe_match": [match]}],
        },
        "impact": impact,
        "publishedDate": f"{cve.year}-01-01T00:00Z",
        "lastModifiedDate": f"{cve.year}-01-02T00:00Z",
    }


def feed_file(cves: Sequence[FeedCve], name: str) -> bytes:
    """The gzipped JSON of feed `name` (a year or "modified")."""
    items = [feed_item(c) for c in cves if name in {"modified", c.year}]
    doc = {
        "CVE_data_type": "CVE",
        "CVE_data_format": "MITRE",
        "CVE_data_version": "4.0",
        "CVE_data_numberOfCVEs": str(len(items)),
        "CVE_data_timestamp": "2026-01-01T00:00Z",
        "CVE_Items": items,
    }
    return gzip.compress(json.dumps(doc).encode())


@dataclass
class NvdFeed:
    cves: Sequence[FeedCve]
    port: int = 0
    fail_with: int | None = None
    requests: list[tuple[str, int]] = field(default_factory=list)

    @property
    def mirror(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    @classmethod
    @contextlib.contextmanager
    def serving(cls, cves: Sequence[FeedCve]) -> Iterator[NvdFeed]:
        feed = cls(cves)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(feed))
        feed.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield feed
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def _handler(feed: NvdFeed) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.removeprefix(PREFIX)
            match = _FILE.match(name) if self.path.startswith(PREFIX) else None
            status = feed.fail_with or (200 if match else 404)
            feed.requests.append((self.path, status))
            body = feed_file(feed.cves, match.group(1)) if status == 200 and match else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
