"""Why POST /ingest keeps its hand validator (issue 16, item 4): one real agent batch's
samples validated by ingest's fast path (diag/web/ingest_routes._samples, series already
known: an agent's steady state) against a pydantic model of a sample, and the whole request
for scale (Flask test client, embedded store).

    .venv/bin/python bench/ingest_validation.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Annotated

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StringConstraints, TypeAdapter  # noqa: E402

from diag.config import load  # noqa: E402
from diag.service import Service  # noqa: E402
from diag.web.app import create_app  # noqa: E402
from diag.web.ingest_routes import _samples  # noqa: E402
from diag.web.validate import LABEL_NAME, MAX_LABEL_VALUE, METRIC_NAME  # noqa: E402
from fleet import real_batch  # noqa: E402


def main() -> None:
    samples, _ = real_batch()
    now = time.time()
    for s in samples:
        s["ts"] = now - 5

    class Sample(BaseModel):
        model_config = ConfigDict(regex_engine="python-re")
        metric: Annotated[str, StringConstraints(max_length=200, pattern=METRIC_NAME.pattern)]
        labels: dict[Annotated[str, StringConstraints(pattern=LABEL_NAME.pattern)],
                     Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]] | None = Field(None, max_length=32)
        value: StrictFloat
        ts: StrictFloat = Field(None, ge=now - 48 * 3600, le=now + 300)

    many = TypeAdapter(list[Sample])
    hand = min(timeit.repeat(lambda: _samples(samples, now, lambda keys: []), number=200, repeat=5)) / 200
    pyd = min(timeit.repeat(lambda: many.validate_python(samples), number=200, repeat=5)) / 200

    with tempfile.TemporaryDirectory() as d:
        service = Service(load(env={}, data_dir=d))
        client = create_app(service).test_client()

        def push() -> None:
            for s in samples:
                s["ts"] = time.time()
            r = client.post("/api/v1/ingest", data=orjson.dumps({"samples": samples}), content_type="application/json")
            assert r.status_code == 202, r.get_json()

        push()
        request = min(timeit.repeat(push, number=50, repeat=3)) / 50
        service.close()
    print(f"{len(samples)} samples: hand path {hand * 1e3:.3f} ms, pydantic {pyd * 1e3:.3f} ms ({pyd / hand:.1f}x); "
          f"whole request {request * 1e3:.2f} ms, which pydantic would make {(pyd - hand) / request * 100:.0f}% slower")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    main()
