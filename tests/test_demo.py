"""`wv demo`: the whole pipeline on a small synthetic set, and a re-run that resumes every step."""

from pathlib import Path

from wv.demo import run_demo


def test_demo_runs_the_whole_pipeline_and_resumes(tmp_path):
    said = []
    figures = run_demo(tmp_path / "demo", workers=1, classes=4, per_class=30, epochs=2, progress=False, say=said.append)
    assert figures["verify"]["ok"] and figures["build_train"]["rejected"] > 0  # the planted broken files
    assert figures["lda"]["scored"] > 0 and figures["select"]["dropped"] > 0
    assert figures["noise"]["dropped"] > figures["noise"]["kept"]  # the curation drops the planted noise first
    assert Path(figures["report"]).is_file() and any(figures["report"] in line for line in said)
    assert figures["train"]["epochs"] == 2 and figures["train"]["val_top1"] is not None
    assert figures["eval"]["crops"] == 10 and figures["eval"]["n"] == figures["build_val"]["written"]
    assert {line.split(".")[0] for line in said if line[:1].isdigit()} == {str(i) for i in range(1, 12)}  # every step ran
    gain = figures["gain"]  # the demo ends with what curation gained over the same budget on everything
    assert gain["uncurated_val_top1"] == figures["uncurated"]["val_top1"] and gain["curated_val_top1"] == figures["train"]["val_top1"]
    assert any("uncurated" in line and f"{gain['uncurated_val_top1']:.3f}" in line for line in said)

    again = run_demo(tmp_path / "demo", workers=1, classes=4, per_class=30, epochs=2, progress=False, say=lambda *a: None)
    assert again["probe"]["steps_per_rank"] == 0 and again["train"]["steps_per_rank"] == 0  # resumed, nothing retrained
    assert again["uncurated"]["steps_per_rank"] == 0
    assert again["eval"]["top1"] == figures["eval"]["top1"]
