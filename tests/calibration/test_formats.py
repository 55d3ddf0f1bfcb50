"""Calibration file formats: round trips, camera order, and pixel parity of every loader on files
written independently of our writers (aniposelib's dump, OpenCV FileStorage, hand-written
Qualisys XML, Human3.6M HDF5 and MPI-INF-3DHP text)."""
import cv2
import h5py
import numpy as np
import pytest

from calibration import CalibrationError, Camera, Rig, detect_format, load_rig, save_rig
from calibration.formats import FORMATS

NUM_CAMS = 12
POINTS = np.random.default_rng(3).uniform([-0.6, -0.6, 0.0], [0.6, 0.6, 1.9], size=(40, 3))  # a body-sized box, Z up


def _truth(num=NUM_CAMS, distortion=True):
    """Ground truth per camera: (name, K, dist, R, t, (w, h)), cameras on a circle around the box."""
    rng = np.random.default_rng(11)
    out = []
    for i in range(num):
        a = 2 * np.pi * i / num
        base = Camera.look_at(eye=(4 * np.cos(a), 4 * np.sin(a), 1.2 + 0.1 * i), target=(0, 0, 1), up=(0, 0, 1),
                              focal=1.0, image_size=(1920, 1080))
        K = np.array([[1500.0 + 20 * i, 0, 955.0 + i], [0, 1497.0 + 20 * i, 541.0 - i], [0, 0, 1]])
        dist = rng.normal(scale=[0.05, 0.02, 0.001, 0.001, 0.005]) if distortion else np.zeros(5)
        out.append((f"cam_{i}", K, dist, base.R, base.t, (1920, 1080)))
    return out


def _reference_pixels(truth):
    """cv2.projectPoints of POINTS through each ground-truth camera: (V, N, 2)."""
    return np.stack([cv2.projectPoints(POINTS, cv2.Rodrigues(R)[0], t, K, d)[0][:, 0] for _, K, d, R, t, _ in truth])


def _rig(truth):
    return Rig([Camera(K=K, R=R, t=t, dist=d, image_size=s, name=n) for n, K, d, R, t, s in truth])


def _assert_same_cameras(a: Rig, b: Rig, atol=1e-9):
    assert a.names == b.names
    for ca, cb in zip(a, b):
        np.testing.assert_allclose(ca.K, cb.K, atol=atol * 1e3)
        np.testing.assert_allclose(ca.R, cb.R, atol=atol)
        np.testing.assert_allclose(ca.t, cb.t, atol=atol)
        d = np.zeros(5)
        d[: ca.dist.size] = ca.dist
        e = np.zeros(5)
        e[: cb.dist.size] = cb.dist
        np.testing.assert_allclose(d, e, atol=atol)
    np.testing.assert_allclose(a.project(POINTS), b.project(POINTS), atol=1e-6)


@pytest.mark.parametrize("name, fmt", [("rig.toml", "anipose"), ("easymocap", "easymocap"), ("rig.qca.txt", "qualisys"),
                                       ("cameras.json", "h36m"), ("cameras.h5", "h36m"),
                                       ("camera.calibration", "mpi_inf_3dhp")])
def test_every_format_round_trips_12_cameras_in_order(tmp_path, name, fmt):
    truth = _truth(distortion=fmt != "mpi_inf_3dhp")  # MPI-INF-3DHP files have no distortion
    rig = _rig(truth)
    out = tmp_path / name
    save_rig(rig, out)
    assert detect_format(out) == fmt
    back = load_rig(out)
    assert back.names == [f"cam_{i}" for i in range(NUM_CAMS)]  # never cam_0, cam_1, cam_10, ...
    _assert_same_cameras(rig, back)
    np.testing.assert_allclose(back.project(POINTS), _reference_pixels(truth), atol=1e-6)
    if name != "cameras.h5":  # the 3d-pose-baseline HDF5 layout has no image size
        assert [c.image_size for c in back] == [(1920, 1080)] * NUM_CAMS
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # no temporary files left behind


def test_aniposelib_reads_our_toml_in_order_and_we_read_its_dump(tmp_path):
    from aniposelib.cameras import Camera as AniCamera, CameraGroup

    truth = _truth()
    rig = _rig(truth)
    save_rig(rig, tmp_path / "ours.toml")
    group = CameraGroup.load(str(tmp_path / "ours.toml"))  # sorts table names as strings
    assert group.get_names() == rig.names  # cam_00 .. cam_11 keep the order
    ani_px = np.stack([c.project(POINTS)[:, 0] for c in group.cameras])
    np.testing.assert_allclose(ani_px, _reference_pixels(truth), atol=1e-6)

    cams = [AniCamera(matrix=K, dist=d, size=list(s), rvec=cv2.Rodrigues(R)[0].ravel(), tvec=t, name=n)
            for n, K, d, R, t, s in truth]
    CameraGroup(cams).dump(str(tmp_path / "theirs.toml"))  # tables cam_0 .. cam_11
    theirs = load_rig(tmp_path / "theirs.toml")
    assert theirs.names == rig.names
    np.testing.assert_allclose(theirs.project(POINTS), _reference_pixels(truth), atol=1e-6)


def test_pose2sim_and_freemocap_toml_layouts(tmp_path):
    truth = _truth(num=3)
    tables = []
    for i, (n, K, d, R, t, s) in enumerate(truth):  # Pose2Sim: cam_01.., 4 distortions, float sizes
        d[4] = 0.0
        fmt = lambda a: "[ " + ", ".join(repr(float(x)) for x in np.ravel(a)) + "]"  # noqa: E731
        tables.append(f"[cam_{i + 1:02d}]\nname = \"cam_{i + 1:02d}\"\nsize = [ {s[0]}.0, {s[1]}.0]\n"
                      f"matrix = [ {fmt(K[0])}, {fmt(K[1])}, {fmt(K[2])}]\ndistortions = {fmt(d[:4])}\n"
                      f"rotation = {fmt(cv2.Rodrigues(R)[0])}\ntranslation = {fmt(t)}\nfisheye = false\n")
    path = tmp_path / "Calib_scene.toml"
    path.write_text("\n".join(tables) + "\n[metadata]\nadjusted = false\nerror = 0.0\n")
    rig = load_rig(path)
    assert rig.names == ["cam_01", "cam_02", "cam_03"] and rig[0].dist.size == 4
    assert rig[1].image_size == (1920, 1080)
    np.testing.assert_allclose(rig.project(POINTS), _reference_pixels(truth), atol=1e-6)
    path.write_text(path.read_text().replace("fisheye = false", "fisheye = true", 1))
    with pytest.raises(CalibrationError, match=r"Calib_scene.toml: camera \[cam_01\] is a fisheye camera"):
        load_rig(path)


def _n(v):
    return repr(float(v))


def _qualisys_xml(truth, left=8, top=4):
    """A Qualisys .qca.txt in the real export layout (1/64 px intrinsics, fov offsets, mm poses)."""
    cams = []
    for i, (n, K, d, R, t, (w, h)) in enumerate(truth):
        rq = np.diag([1.0, -1.0, -1.0]) @ R  # Qualisys camera axes: looks along -z, y up
        c = -R.T @ t * 1000.0
        rot = " ".join(f'r{a + 1}{b + 1}="{_n(rq[a, b])}"' for a in range(3) for b in range(3))
        cams.append(f"""    <camera active="1" pointcount="3512" avg-residual="0.312" serial="{20000 + i}" model="Miqus Video" viewrotation="0">
      <fov_marker left="0" top="0" right="1823" bottom="1087"/>
      <fov_marker_max left="0" top="0" right="1823" bottom="1087"/>
      <fov_video left="{left}" top="{top}" right="{left + w - 1}" bottom="{top + h - 1}"/>
      <fov_video_max left="0" top="0" right="1935" bottom="1091"/>
      <transform x="{_n(c[0])}" y="{_n(c[1])}" z="{_n(c[2])}" {rot}/>
      <intrinsic focallength="6.29" sensorMinU="0" sensorMaxU="123840" sensorMinV="0" sensorMaxV="69824" focalLengthU="{_n(K[0, 0] * 64)}" focalLengthV="{_n(K[1, 1] * 64)}" centerPointU="{_n((K[0, 2] + left) * 64)}" centerPointV="{_n((K[1, 2] + top) * 64)}" skew="0" radialDistortion1="{_n(d[0])}" radialDistortion2="{_n(d[1])}" radialDistortion3="{_n(d[4])}" tangentalDistortion1="{_n(d[2])}" tangentalDistortion2="{_n(d[3])}"/>
    </camera>""")  # noqa: E501 (one XML element per line, as Qualisys writes them)
    return ('<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n'
            '<calibration source="C:\\Users\\lab\\cal.qca" created="2024-03-01 10:12:44" qtm-version="2023.3" '
            'type="regular" wandLength="601.0000" maximumFrames="1000">\n  <results std-dev="0.28" '
            'min-max-diff="0.71"/>\n  <cameras>\n' + "\n".join(cams) + "\n  </cameras>\n</calibration>\n")


def _mpi_text(truth):
    lines = ["Skeletool Camera Calibration File V1.0"]
    for n, K, d, R, t, s in truth:
        intr, extr = np.eye(4), np.eye(4)
        intr[:3, :3] = K
        extr[:3, :3], extr[:3, 3] = R, t * 1000.0
        lines += [f"name          {n}", "  sensor      10 10", f"  size        {s[0]} {s[1]}", "  animated    0",
                  "  intrinsic   " + " ".join(repr(float(x)) for x in intr.ravel()),
                  "  extrinsic   " + " ".join(repr(float(x)) for x in extr.ravel()), "  radial      0"]
    return "\n".join(lines) + "\n"


def test_every_loader_projects_independently_written_files_to_the_same_pixels(tmp_path):
    from aniposelib.cameras import Camera as AniCamera, CameraGroup

    truth = _truth(num=4)
    files = {}
    files["anipose"] = tmp_path / "calibration.toml"
    CameraGroup([AniCamera(matrix=K, dist=d, size=list(s), rvec=cv2.Rodrigues(R)[0].ravel(), tvec=t, name=n)
                 for n, K, d, R, t, s in truth]).dump(str(files["anipose"]))
    em = tmp_path / "easymocap"
    em.mkdir()
    for fname, keys in (("intri.yml", ("K", "dist")), ("extri.yml", ("R", "Rot", "T"))):
        fs = cv2.FileStorage(str(em / fname), cv2.FILE_STORAGE_WRITE)
        fs.startWriteStruct("names", cv2.FileNode_SEQ)
        for n, *_ in truth:
            fs.write("", n)
        fs.endWriteStruct()
        for n, K, d, R, t, s in truth:
            values = {"K": K, "dist": d.reshape(1, 5), "R": cv2.Rodrigues(R)[0], "Rot": R, "T": t.reshape(3, 1)}
            for k in keys:
                fs.write(f"{k}_{n}", values[k])
        fs.release()
    files["easymocap"] = em
    files["qualisys"] = tmp_path / "session.qca.txt"
    files["qualisys"].write_text(_qualisys_xml(truth))
    files["h36m"] = tmp_path / "cameras.h5"
    with h5py.File(files["h36m"], "w") as f:
        for m, (n, K, d, R, t, s) in enumerate(truth, 1):
            g = f.create_group(f"subject9/camera{m}")
            g["R"], g["T"] = R.T, (-R.T @ t * 1000.0).reshape(3, 1)
            g["f"], g["c"] = K[[0, 1], [0, 1]].reshape(2, 1), K[:2, 2].reshape(2, 1)
            g["k"], g["p"] = d[[0, 1, 4]].reshape(3, 1), d[[2, 3]].reshape(2, 1)
            g["Name"] = np.frombuffer(n.encode(), dtype=np.uint8)
    files["mpi_inf_3dhp"] = tmp_path / "camera.calibration"
    files["mpi_inf_3dhp"].write_text(_mpi_text(_truth(num=4, distortion=False)))
    assert sorted(files) == sorted(FORMATS)
    for fmt, path in files.items():
        assert detect_format(path) == fmt
        rig = load_rig(path)
        expected = _reference_pixels(_truth(num=4, distortion=fmt != "mpi_inf_3dhp"))
        np.testing.assert_allclose(rig.project(POINTS), expected, atol=1e-6, err_msg=fmt)
        assert [c.image_size for c in rig][0] == ((0, 0) if fmt in ("h36m", "easymocap") else (1920, 1080))  # not in these files
    assert load_rig(files["qualisys"]).names == ["20000", "20001", "20002", "20003"]


def test_qualisys_world_is_metres_and_cameras_look_forward(tmp_path):
    path = tmp_path / "a.qca.txt"
    path.write_text(_qualisys_xml(_truth(num=2)))
    rig = load_rig(path)
    for cam, (_, _, _, R, t, _) in zip(rig, _truth(num=2)):
        np.testing.assert_allclose(cam.center, -R.T @ t, atol=1e-9)  # metres, not millimetres
        assert (cam.R @ np.array([0.0, 0.0, 1.0]) + cam.t)[2] > 0  # the box centre is in front


def test_h36m_files_hold_one_rig_per_subject(tmp_path):
    rig = _rig(_truth(num=4))
    from calibration.formats import write_h36m_cameras

    path = tmp_path / "cameras.json"
    write_h36m_cameras({"S1": rig, "S9": rig.subset([3, 2, 1, 0])}, path)
    assert load_rig(path, subject="S9").names == ["cam_3", "cam_2", "cam_1", "cam_0"]
    with pytest.raises(CalibrationError, match="holds the cameras of subjects S1, S9; choose one"):
        load_rig(path)
    with pytest.raises(CalibrationError, match="no cameras for subject 'S5'"):
        load_rig(path, subject="S5")


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml: calibration file not found"):
        load_rig(tmp_path / "nope.toml")
    junk = tmp_path / "notes.txt"
    junk.write_text("hello = 3\n")
    with pytest.raises(CalibrationError, match="notes.txt: not a calibration file"):
        load_rig(junk)
    toml = tmp_path / "broken.toml"
    toml.write_text('[cam_0]\nname = "a"\nmatrix = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\nrotation = [0, 0, 0]\n')
    with pytest.raises(CalibrationError, match=r"broken.toml: table \[cam_0\] misses distortions, translation"):
        load_rig(toml)
    xml = tmp_path / "b.qca.txt"
    xml.write_text(_qualisys_xml(_truth(num=1)).replace('focalLengthU="', 'focalLengthX="'))
    with pytest.raises(CalibrationError, match="b.qca.txt: camera 20000: <intrinsic> has no 'focalLengthU'"):
        load_rig(xml)
    with pytest.raises(CalibrationError, match="cannot tell the calibration format"):
        save_rig(_rig(_truth(num=1)), tmp_path / "rig.txt")
    with pytest.raises(CalibrationError, match="lens distortion, which a camera.calibration file cannot hold"):
        save_rig(_rig(_truth(num=1)), tmp_path / "camera.calibration")
    assert not (tmp_path / "camera.calibration").exists()
    with pytest.raises(CalibrationError, match="unknown calibration format 'colmap'; known formats: anipose"):
        load_rig(toml, format="colmap")
    assert issubclass(CalibrationError, ValueError)


def test_failed_easymocap_write_keeps_the_old_pair(tmp_path):
    rig = _rig(_truth(num=2))
    save_rig(rig, tmp_path)
    before = (tmp_path / "intri.yml").read_text(), (tmp_path / "extri.yml").read_text()
    bad = Rig([Camera(K=c.K, R=c.R, t=c.t, dist=c.dist, image_size=c.image_size, name=f"cam {i}")
               for i, c in enumerate(rig)])
    with pytest.raises(CalibrationError, match="camera names .* have other characters"):
        save_rig(bad, tmp_path / "intri.yml")
    assert ((tmp_path / "intri.yml").read_text(), (tmp_path / "extri.yml").read_text()) == before


def test_convert_command(tmp_path, capsys):
    from mvspin.cli.main import main

    (tmp_path / "a.qca.txt").write_text(_qualisys_xml(_truth(num=3)))
    assert main(["calibrate", "convert", str(tmp_path / "a.qca.txt"), str(tmp_path / "rig.toml")]) == 0
    assert "qualisys, 3 cameras: 20000, 20001, 20002" in capsys.readouterr().out
    np.testing.assert_allclose(load_rig(tmp_path / "rig.toml").project(POINTS), _reference_pixels(_truth(num=3)), atol=1e-6)
    assert main(["calibrate", "convert", str(tmp_path / "a.qca.txt"), str(tmp_path / "rig.txt")]) == 2
    assert "cannot tell the calibration format from the name" in capsys.readouterr().err
