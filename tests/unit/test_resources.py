"""sfc.resources: what each job asks the scheduler for grows with the work it does."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from sfc import io, resources

DEMO = resources.Work(t1_voxels=90 * 108 * 93, dwi_voxels=64 * 77 * 60, dwi_volumes=34, bold_voxels=40 * 48 * 38,
                      bold_volumes=150, streamlines=20_000, chunks=1)
# a study's subject: T1w 1 mm, DWI 2 mm x 70 volumes, BOLD 2.5 mm x 300 volumes, 10 M streamlines
REAL = resources.Work(t1_voxels=182 * 218 * 182, dwi_voxels=110 * 110 * 70, dwi_volumes=70,
                      bold_voxels=78 * 94 * 64, bold_volumes=300, streamlines=10_000_000, chunks=8)


def test_every_rule_asks_more_for_a_real_subject_than_for_the_demo():
    for rule in resources.COSTS:
        demo = resources.mem_mb(rule, DEMO), resources.runtime(rule, DEMO)
        real = resources.mem_mb(rule, REAL), resources.runtime(rule, REAL)
        assert real[0] >= demo[0] and real[1] >= demo[1], (rule, demo, real)
    for rule in ("anat_preprocess", "anat_5tt", "func_preprocess", "dwi_tractography", "dwi_sift2"):
        assert resources.mem_mb(rule, REAL) > resources.mem_mb(rule, DEMO), rule


@pytest.mark.parametrize("rule", ["dwi_tractography", "dwi_sift2", "dwi_connectome"])
def test_ten_times_the_streamlines_asks_for_more_time(rule):
    more = resources.Work(**{**REAL.__dict__, "streamlines": REAL.streamlines * 10})
    assert resources.runtime(rule, more, threads=8) > resources.runtime(rule, REAL, threads=8)
    if rule == "dwi_sift2":
        assert resources.mem_mb(rule, more) > 5 * resources.mem_mb(rule, REAL) / 2


def test_tractography_wall_time_falls_with_threads_up_to_the_chunks_and_memory_grows():
    minutes = [resources.runtime("dwi_tractography", REAL, threads=t) for t in (1, 2, 4, 8, 16)]
    assert minutes[0] > 1.9 * minutes[1] > 3.6 * minutes[2] > 7 * minutes[3] / 2
    assert minutes[4] == minutes[3]  # 8 chunks: a ninth thread has nothing to run
    memory = [resources.mem_mb("dwi_tractography", REAL, threads=t) for t in (1, 8)]
    assert memory[1] > memory[0]  # each running chunk holds its own FOD


def test_attempt_scales_the_request_and_floors_hold():
    assert resources.mem_mb("dwi_sift2", REAL, attempt=2) == 2 * resources.mem_mb("dwi_sift2", REAL)
    assert resources.runtime("dwi_qc", DEMO) == resources.MIN_RUNTIME
    assert resources.mem_mb("dwi_tensor", DEMO) == resources.MIN_MEM_MB


def test_unit_work_reads_the_headers(tmp_path):
    def save(name, shape):
        path = tmp_path / name
        nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), path)
        return path

    t1 = save("t1.nii.gz", (10, 12, 14))
    dwi = save("dwi.nii", (8, 8, 6, 7))
    bolds = [save("b1.nii.gz", (5, 6, 7, 20)), save("b2.nii.gz", (5, 6, 7, 30))]
    work = resources.unit_work(t1, dwi, bolds, streamlines=100, chunks=2)
    assert (work.t1_voxels, work.dwi_voxels, work.dwi_volumes) == (1680, 384, 7)
    assert (work.bold_voxels, work.bold_volumes, work.streamlines, work.chunks) == (210, 50, 100, 2)
    assert io.nifti_dims(t1) == (10, 12, 14, 1)


def test_group_requests_grow_with_subjects():
    assert resources.group_mem_mb(10_000, 2) > resources.group_mem_mb(300, 2)
    assert resources.group_runtime(10_000, 3) > resources.group_runtime(300, 3) >= 10
