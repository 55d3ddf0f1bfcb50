"""``mvspin view`` in a real headless browser (Debian's Chromium, driven through the DevTools
protocol): the page loads without console errors, the browser's picture through a rig camera
shows the body where the fit's projection puts it, and stepping the timeline moves it. Skipped
with one line where Chromium or viser is missing."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import cv2
import numpy as np
import pytest

from tests.apps.test_view import fitted  # noqa: F401  (the module-scoped fitted recording)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _DevTools:
    """The DevTools protocol over one page's websocket: calls, and the events seen meanwhile."""

    def __init__(self, ws) -> None:
        self.ws, self.next_id, self.events = ws, 0, []

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=0.1)))
            except TimeoutError:
                pass

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        end = time.monotonic() + 30
        while time.monotonic() < end:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                return message.get("result", {})
            self.events.append(message)
        raise TimeoutError(method)

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:300])
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))[:300])
            elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", "")[:300])
        return out


def _body_mask(image: np.ndarray) -> np.ndarray:
    """Pixels of the subject's (red) mesh: shaded red, unlike the white background and grey frusta."""
    rgb = image[..., :3].astype(int)
    return (rgb[..., 0] > rgb[..., 1] + 40) & (rgb[..., 0] > rgb[..., 2] + 40)


def _silhouette(scene, camera: int, frame: int, size: tuple[int, int]) -> np.ndarray:
    cam = scene.cameras[camera]
    uv = cam.project(scene.subjects[0].vertices[frame].astype(np.float64))
    mask = np.zeros(size[::-1], np.uint8)
    for tri in scene.faces:
        cv2.fillPoly(mask, [np.round(uv[tri] * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


def test_viewer_in_headless_chromium(fitted, tmp_path):  # noqa: F811
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("browser test not run: needs Debian's chromium (apt-get install chromium)")
    pytest.importorskip("viser", reason="the viewer needs viser (pip install 'mvspin[view]')")
    from websockets.sync.client import connect

    from mvspin.apps.view import ViewConfig, Viewer, build_view_scene

    scene = build_view_scene(ViewConfig(fit=fitted[0] / "out"))
    port, devtools_port = _free_port(), _free_port()
    viewer = Viewer(scene, "127.0.0.1", port)
    browser = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
         f"--remote-debugging-port={devtools_port}", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=800,600", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = None
        for _ in range(100):  # the DevTools endpoint comes up within seconds
            try:
                pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list", timeout=2).read())
                page = next(p for p in pages if p.get("type") == "page")
                break
            except (OSError, StopIteration):
                time.sleep(0.2)
        assert page is not None, "chromium's DevTools endpoint did not come up"
        with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            tools = _DevTools(ws)
            for domain in ("Runtime", "Log", "Page"):
                tools.call(f"{domain}.enable")
            tools.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
            for _ in range(150):
                if viewer.server.get_clients():
                    break
                tools.pump(0.2)
            clients = list(viewer.server.get_clients().values())
            assert clients, "the page never connected to the viewer"
            tools.pump(3.0)  # the scene streams in
            w, h = scene.cameras[0].image_size
            pictures = {}
            for frame in (0, scene.num_frames - 1):
                viewer.frame = frame
                viewer.look_through(0)
                for frustum in viewer.frusta:  # the other cameras may stand in front of the body
                    frustum.visible = False
                picture = None
                for _ in range(20):  # until the browser has the new frame and view (a loaded machine is slow)
                    tools.pump(0.5)
                    previous, picture = picture, clients[0].camera.get_render(height=h, width=w)
                    if previous is not None and np.array_equal(_body_mask(previous), _body_mask(picture)):
                        break
                pictures[frame] = picture
                shot = tools.call("Page.captureScreenshot", format="png")
                assert len(shot["data"]) > 1000
            tools.pump(0.5)
            assert tools.errors() == []
    finally:
        viewer.stop()
        browser.terminate()
        browser.wait(timeout=30)
    for frame, picture in pictures.items():
        body, expected = _body_mask(picture), _silhouette(scene, 0, frame, (w, h))
        iou = (body & expected).sum() / max((body | expected).sum(), 1)
        assert body.sum() > 200 and iou > 0.6, (frame, int(body.sum()), int(expected.sum()), iou)
    first, last = (_body_mask(pictures[f]) for f in (0, scene.num_frames - 1))
    assert (first ^ last).sum() > 50  # stepping the timeline moved the body
