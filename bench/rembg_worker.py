"""rembg's side of the speed benchmark, run by its own interpreter (var/bench/rembg-venv; bench/theirs.py).

Makes one rembg session for U²-Net-p (the weights where U2NET_HOME points), warms it on one photo,
then reads JSON requests from stdin, one a line, ``{"input": path, "output": path}``, and for each
answers one line on stdout, ``{"seconds": s}``: the time of ``rembg.remove()`` on the photo's bytes
with the warm session, PNG bytes out (written to ``output`` after the clock stops). The first line
it writes describes the session: ``{"ready": true, "rembg": version, "onnxruntime": version,
"providers": [...], "model": path}``. Any error is written as ``{"error": message}`` and ends it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    try:
        import onnxruntime
        import rembg
        from rembg import new_session, remove

        session = new_session("u2netp")
        warm = Path(sys.argv[1]).read_bytes()
        remove(warm, session=session)  # the first run allocates what the later ones reuse
        print(json.dumps({"ready": True, "rembg": rembg.__version__, "onnxruntime": onnxruntime.__version__,
                          "providers": session.inner_session.get_providers(),
                          "model": session.__class__.download_models()}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            data = Path(request["input"]).read_bytes()
            start = time.perf_counter()
            cut_out = remove(data, session=session)
            seconds = time.perf_counter() - start
            Path(request["output"]).write_bytes(cut_out)
            print(json.dumps({"seconds": seconds}), flush=True)
    except Exception as exc:  # the benchmark shows it and stops
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
