"""The HTML report in a real browser: loads cleanly, every image and video resolves.

Needs Debian's chromium and chromium-driver plus selenium (the ``test``
extra); skipped with a message when the browser is not installed.
"""

import shutil

import pytest

from jaxvr import compare
from jaxvr.assets import sample_clip_path
from jaxvr.report import html

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
DRIVER = shutil.which('chromedriver')


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  out = tmp_path_factory.mktemp('report')
  bad = out / '<b>bad & "clip".mp4'
  bad.write_bytes(b'not a video')
  rows = compare.compare(
      [sample_clip_path(), bad], out, reducer_names=['x264-crf28', 'interp-linear'],
      spec=compare.ClipSpec(frames=6, size=64), metric_names=('psnr', 'ssim_y'),
      progress=False)
  return html.write_report(out, rows), rows


def test_report_escapes_names_and_lists_failures(report):
  path, rows = report
  text = path.read_text()
  assert '<b>bad' not in text and '&lt;b&gt;bad &amp; &quot;clip&quot;' in text
  assert any('error' in r for r in rows)
  assert text.count('<img') >= 3 and text.count('<video') >= 1


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason=(
    'headless browser test needs Debian packages chromium and chromium-driver '
    '(apt-get install chromium chromium-driver)'))
def test_report_loads_in_chromium(report):
  webdriver = pytest.importorskip('selenium.webdriver', reason='pip install selenium')
  path, _ = report
  opts = webdriver.ChromeOptions()
  opts.binary_location = CHROMIUM
  for flag in ('--headless=new', '--no-sandbox', '--disable-gpu',
               '--disable-dev-shm-usage', '--disable-background-networking',
               '--disable-component-update', '--no-first-run',
               '--autoplay-policy=no-user-gesture-required'):
    opts.add_argument(flag)
  opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
  service = webdriver.ChromeService(executable_path=DRIVER)
  driver = webdriver.Chrome(options=opts, service=service)
  try:
    driver.get(path.as_uri())
    driver.set_script_timeout(30)
    status = driver.execute_async_script("""
      const done = arguments[arguments.length - 1];
      const imgs = [...document.images];
      const vids = [...document.querySelectorAll('video')];
      const waitVideo = v => new Promise(res => {
        if (v.readyState >= 1) return res();
        v.addEventListener('loadedmetadata', res, {once: true});
        v.addEventListener('error', res, {once: true});
        v.load();
      });
      Promise.all(vids.map(waitVideo)).then(() => done({
        images: imgs.length,
        broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,
        videos: vids.length,
        broken_videos: vids.filter(v => v.error || v.readyState < 1 || !v.videoWidth).length,
      }));
    """)
    errors = [e for e in driver.get_log('browser') if e['level'] == 'SEVERE']
  finally:
    driver.quit()
  assert status['images'] >= 3 and status['videos'] >= 1, status
  assert status['broken_images'] == 0 and status['broken_videos'] == 0, status
  assert not errors, errors
