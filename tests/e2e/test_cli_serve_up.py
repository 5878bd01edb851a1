"""``vitforge serve up`` as a user runs it: a subprocess with its own local Ray, a key from a file,
``serve embed`` over a folder with a broken file, and a clean stop on SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from vitforge.config import load_spec
from vitforge.inference import build_encoder
from vitforge.train.export import save_export

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_serve_up_key_file_embed_folder_and_sigterm(tmp_path: Path) -> None:
    spec = load_spec(data={"model": {"size": "test", "patch_size": 4, "img_size": 16}})
    export = save_export(tmp_path / "vit", {"encoder": build_encoder(spec.model)}, spec, "mae",
                         {"mean": [0.5] * 3, "std": [0.25] * 3})  # fmt: skip
    (tmp_path / "key").write_text("s3cret\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "VITFORGE_API_KEY")}
    cmd = [sys.executable, "-m", "vitforge.cli", "serve", "up", f"vit={export}", "--port", str(port),
           "--api-key-file", str(tmp_path / "key")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.5)
        assert httpx.get(f"{url}/v1/models", timeout=30).status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"x-api-key": "s3cret"}, timeout=30).status_code == 200
        photos = tmp_path / "photos"
        photos.mkdir()
        rng = np.random.default_rng(0)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(photos / f"{i}.png")
        (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        embed = subprocess.run(
            [sys.executable, "-m", "vitforge.cli", "serve", "embed", str(photos), "--url", url,
             "--out", str(tmp_path / "e.npz")],
            env={**env, "VITFORGE_API_KEY": "s3cret"}, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert embed.returncode == 0, embed.stderr[-3000:]
        assert "broken.jpg" in embed.stderr and "images[" not in embed.stderr
        saved = np.load(tmp_path / "e.npz")
        assert saved["embeddings"].shape[0] == 3 and all("broken" not in p for p in saved["paths"])
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "stopping Serve" in out and "Stack trace" not in err and "SIGTERM received" not in err
