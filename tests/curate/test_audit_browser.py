"""The audit report in a real browser: Debian's headless Chromium, driven by selenium through chromedriver.

Opens the report from file:// (after moving its folder: it must be relocatable), checks there are no
console errors, that every thumbnail decodes (naturalWidth > 0), that nothing in the cards or the
tables is clipped, that the class filter, the rule filter and the score sort change what is shown;
saves screenshots under test-artifacts/.

Chromium missing fails the test (`make test` installs it, see tools/system_packages.sh); WV_SKIP_BROWSER_TEST=1 skips it locally.
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from wv.curate.audit import write_report
from wv.curate.select import select
from wv.shards import sidecars
from wv.shards.root import Root

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
)
NARROW_AND_WIDE = (1020, 1400)  # window widths; the last one is CHROME_FLAGS' --window-size
RULES = ["synthetic.clean < 0.35", "synthetic.subset == 2 and synthetic.clean < 0.45"]


def find(name: str, fallback: str) -> str | None:
    found = shutil.which(name) or (fallback if Path(fallback).is_file() else None)
    return found


@pytest.fixture(scope="module")
def browser():
    if os.environ.get("WV_SKIP_BROWSER_TEST") == "1":
        pytest.skip("WV_SKIP_BROWSER_TEST=1")
    chromium, driver_path = find("chromium", "/usr/bin/chromium"), find("chromedriver", "/usr/bin/chromedriver")
    if not chromium or not driver_path:
        pytest.fail("the audit browser test needs Debian's chromium and chromium-driver (`make test` installs them); set WV_SKIP_BROWSER_TEST=1 to skip it on a machine without them")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[dev]'")
    profile = tempfile.mkdtemp(prefix="wv-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def report(built_root, synth_v1, tmp_path_factory) -> Path:
    """A report made on a copy of built_root, then moved to another folder."""
    folder = tmp_path_factory.mktemp("browser")
    root = Root(shutil.copytree(built_root, folder / "root"))
    truth = pl.read_parquet(synth_v1 / "ground_truth.parquet").select("__key__", "is_noisy")
    rng = np.random.default_rng(0)
    for shard in root.shard_names("train"):
        frame = sidecars.shard_keys(root, shard).to_frame().join(truth, on="__key__", how="left", maintain_order="left")
        noisy = frame["is_noisy"].cast(pl.Float64).to_numpy()
        sidecars.write_scores(
            root,
            "synthetic",
            shard,
            frame.select("__key__").with_columns(
                pl.Series("clean", 0.7 - 0.5 * noisy + rng.normal(0, 0.15, frame.height), dtype=pl.Float32),
                pl.Series("subset", rng.integers(0, 3, frame.height), dtype=pl.Int8),
                pl.Series("keywords", [["web", "photo"]] * frame.height, dtype=pl.List(pl.String)),
            ),
        )
        write_wide_scores(root, shard, rng)
    select(root.path, RULES, min_per_class=10, max_drop_fraction=0.6, progress=False)
    write_report(root.path, per_class=10, kept_per_class=4, overview=24, progress=False)
    return Path(shutil.move(str(root.reports_dir / "audit"), str(folder / "moved-report")))


def write_wide_scores(root: Root, shard: str, rng) -> None:
    """Columns as `wv score confidence`, `density` and `lda` name them, with values as wide as theirs."""
    keys = sidecars.shard_keys(root, shard)
    n = len(keys)
    sidecars.write_scores(
        root,
        "confidence",
        shard,
        pl.DataFrame({"__key__": keys}).with_columns(
            pl.Series("p_label", rng.uniform(0, 1, n), dtype=pl.Float32), pl.Series("top1", rng.integers(0, 1000, n), dtype=pl.Int32), pl.Series("p_top1", rng.uniform(0, 1, n), dtype=pl.Float32)
        ),
    )
    sidecars.write_scores(
        root,
        "density",
        shard,
        pl.DataFrame({"__key__": keys}).with_columns(
            pl.Series("density", rng.integers(0, 100_000, n), dtype=pl.Int32),
            pl.Series("delta", rng.uniform(10, 40, n) * 1.0001, dtype=pl.Float32),
            pl.Series("cutoff", rng.uniform(0, 2, n) / 3, dtype=pl.Float32),
        ),
    )
    sidecars.write_scores(
        root,
        "label_weights",
        shard,
        pl.DataFrame({"__key__": keys}).with_columns(
            pl.Series("label_weight", rng.uniform(0, 1, n), dtype=pl.Float64), pl.Series("text_flag", rng.choice(["", "empty_text", "no_dictionary_words"], n), dtype=pl.String)
        ),
    )


def clipped(driver, selector: str) -> list:
    """The shown elements under `selector` whose content is wider than their box (cut at its edge)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth)"
        ".map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + '>' + e.clientWidth + ': ' + e.textContent.slice(0, 60))",
        selector,
    )


def severe_console_messages(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def wait_for_images(driver) -> list:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"))
    return driver.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")


def visible(driver, selector: str) -> list:
    return driver.execute_script("return Array.from(document.querySelectorAll(arguments[0])).filter(e => e.offsetParent !== null)", selector)


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_index_page(browser, report):
    from selenium.webdriver.support.ui import Select

    browser.get((report / "index.html").as_uri())
    widths = wait_for_images(browser)
    assert widths and all(w > 0 for w in widths), widths
    rows = visible(browser, "#rows tr")
    classes = len(list((report / "classes").glob("*.html")))
    assert len(rows) == classes
    for width in NARROW_AND_WIDE:
        browser.set_window_size(width, 1800)
        assert not clipped(browser, "table, table *"), width
    # the class filter: one class by name, the mosaic follows it
    name = rows[0].find_elements("css selector", "a")[0].text
    label = rows[0].find_elements("css selector", "td")[0].text
    box = browser.find_element("id", "q")
    box.send_keys(name)
    filtered = visible(browser, "#rows tr")
    assert len(filtered) == 1 and name in filtered[0].text
    tiles = visible(browser, "#mosaic .tile")
    assert all(t.get_attribute("data-label") == label for t in tiles)
    assert len(tiles) < len(browser.find_elements("css selector", "#mosaic .tile"))
    box.clear()
    box.send_keys(" ")  # clear() fires no input event; a blank query shows everything
    assert len(visible(browser, "#rows tr")) == classes
    # the rule filter: only the classes the second rule dropped from
    Select(browser.find_element("id", "rule")).select_by_value("1")
    by_rule = visible(browser, "#rows tr")
    assert 0 < len(by_rule) <= classes
    assert all(bar_titles(r) and any(t.startswith(RULES[1]) for t in bar_titles(r)) for r in by_rule)
    Select(browser.find_element("id", "rule")).select_by_value("-1")
    assert not severe_console_messages(browser)
    screenshot(browser, "audit-index.png")


def bar_titles(row) -> list:
    return [s.get_attribute("title") for s in row.find_elements("css selector", ".bar span")]


def test_class_page(browser, report):
    from selenium.webdriver.support.ui import Select

    browser.get((report / "index.html").as_uri())
    link = visible(browser, "#rows tr a")[0]
    link.click()
    assert "/classes/" in browser.current_url
    widths = wait_for_images(browser)
    assert widths and all(w > 0 for w in widths), widths
    cards = visible(browser, ".card")
    assert cards and any(c.get_attribute("data-state") == "dropped" for c in cards)
    for width in NARROW_AND_WIDE:  # four columns of the narrowest cards; five wider ones
        browser.set_window_size(width, 1800)
        assert not clipped(browser, ".card, .card *, table, table *"), width
        screenshot(browser, f"audit-class-{width}px.png")
    # the rule chip: only the cards that rule dropped
    browser.find_element("css selector", ".chip[data-f='r0']").click()
    shown = visible(browser, ".card")
    assert shown and len(shown) < len(cards)
    assert all(c.get_attribute("data-rule") == "r0" and c.get_attribute("data-state") == "dropped" for c in shown)
    browser.find_element("css selector", ".chip[data-f='kept']").click()
    assert all(c.get_attribute("data-state") == "kept" for c in visible(browser, ".card"))
    browser.find_element("css selector", ".chip[data-f='all']").click()
    assert len(visible(browser, ".card")) == len(cards)
    # sorting by a score orders the dropped cards by it
    sort = Select(browser.find_element("id", "sort"))
    option = next(o for o in sort.options if o.text.startswith("synthetic.clean") and o.text.endswith("↑"))
    sort.select_by_visible_text(option.text)
    column = option.get_attribute("value").split(":")[0]
    values = [float(c.get_attribute(f"data-s{column}")) for c in visible(browser, ".group.dropped .card")]
    assert len(values) > 1 and values == sorted(values)
    assert not severe_console_messages(browser)
    screenshot(browser, "audit-class.png")
