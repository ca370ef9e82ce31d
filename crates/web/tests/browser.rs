//! The UI in a real browser: Debian's `chromium`, headless, against a test
//! server with demo data. Asserts what a person checks (a target's health
//! and error are shown, the filter works, the relabel debugger shows each
//! step) on the DOM chromium rendered, and takes a screenshot of every
//! page (a laptop and a phone width).
//!
//! Screenshots go to a temporary directory, or to `docs/screenshots/` of
//! the repository when `TRIBUTARY_UPDATE_SCREENSHOTS` is set. Without
//! chromium the test prints a notice and passes, unless `CI` is set: CI
//! must install it (`apt-get install -y chromium`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tributary_web::WebSecurity;

/// Upper bound for one chromium run.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

fn find_chromium() -> Option<PathBuf> {
    let from_env = std::env::var_os("CHROMIUM").map(PathBuf::from);
    let candidates = from_env
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from));
    for c in candidates {
        if c.exists() {
            return Some(c);
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "chromium is missing: CI must install Debian's chromium package for the browser tests"
        );
    }
    eprintln!("NOTICE: skipping the browser tests, chromium is not installed (apt-get install -y chromium)");
    None
}

struct Browser {
    bin: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Runs chromium headless with `extra` args on `url`; returns stdout.
    fn run(&self, extra: &[String], url: &str) -> String {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", self.profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("starting chromium: {e}"),
        };
        // Read stdout on a thread so a full pipe cannot stall the browser.
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            if let Some(mut s) = stdout {
                let _ = std::io::Read::read_to_string(&mut s, &mut out);
            }
            out
        });
        let deadline = Instant::now() + BROWSER_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("chromium did not finish {url} within {BROWSER_TIMEOUT:?}");
                }
            }
        }
        reader.join().unwrap_or_default()
    }

    fn dom(&self, url: &str) -> String {
        self.run(&["--dump-dom".to_string()], url)
    }

    fn screenshot(&self, url: &str, path: &Path, width: u32, height: u32) {
        let _ = std::fs::remove_file(path);
        self.run(
            &[
                format!("--screenshot={}", path.display()),
                format!("--window-size={width},{height}"),
            ],
            url,
        );
        let png = std::fs::read(path).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{url}: no screenshot at {}",
            path.display()
        );
    }
}

fn screenshot_dir(tmp: &Path) -> PathBuf {
    if std::env::var_os("TRIBUTARY_UPDATE_SCREENSHOTS").is_some() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        if std::fs::create_dir_all(&dir).is_ok() {
            return dir;
        }
    }
    tmp.to_path_buf()
}

/// The text of the element with `id` in a dumped DOM (chromium quotes
/// attributes), without tags.
fn element_text(dom: &str, id: &str) -> String {
    let Some(start) = dom.find(&format!("id=\"{id}\"")) else {
        return String::new();
    };
    let rest = &dom[start..];
    let mut text = String::new();
    let mut in_tag = true;
    for c in rest.chars().take(200_000) {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
        if text.len() > 100_000 {
            break;
        }
    }
    text
}

fn count_rows(dom: &str, table_id: &str) -> usize {
    dom.split(&format!("id=\"{table_id}\""))
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .and_then(|t| {
            t.split_once("<tbody>")
                .map(|(_, b)| b.to_string())
                .or(Some(t.to_string()))
        })
        .map_or(0, |t| t.matches("<tr").count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_can_operate_the_agent_from_the_ui() {
    let Some(bin) = find_chromium() else { return };
    let server = start(
        Arc::new(demo_status()),
        options("/", false),
        WebSecurity::default(),
    )
    .await;
    let base = server.base.clone();
    let result = tokio::task::spawn_blocking(move || check_pages(bin, &base)).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn check_pages(bin: PathBuf, base: &str) {
    let profile = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let shots_tmp = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let b = Browser { bin, profile };

    // Targets: health and last error are visible per target.
    let dom = b.dom(&format!("{base}/targets"));
    assert_eq!(count_rows(&dom, "targets"), 5, "five active targets listed");
    let table = element_text(&dom, "targets");
    assert!(table.contains("http://10.0.0.2:9100/metrics"), "{table}");
    assert!(
        table.contains("connect: connection refused"),
        "the error is shown"
    );
    assert!(
        dom.contains("class=\"down\">down</td>"),
        "down health is marked"
    );
    assert!(dom.contains("class=\"up\">up</td>"), "up health is marked");

    // The filter narrows the list to what was asked for.
    let dom = b.dom(&format!("{base}/targets?search=&health=down&pool="));
    assert_eq!(count_rows(&dom, "targets"), 2);
    let table = element_text(&dom, "targets");
    assert!(
        !table.contains("10.0.0.1:9100"),
        "an up target is filtered out"
    );
    assert!(
        dom.contains("<option value=\"down\" selected=\"\">"),
        "the filter keeps its state"
    );

    // The last-scrape view points at the broken line.
    let dom = b.dom(&format!(
        "{base}/target?pool=node&url=http%3A%2F%2F10.0.0.3%3A9100%2Fmetrics"
    ));
    assert!(element_text(&dom, "last-error").contains("line 3, column 17"));
    assert!(
        dom.contains("<span class=\"hl\">http_requests_total"),
        "the failing line is highlighted"
    );

    // The relabel debugger, fed from a dropped target, shows each step.
    let dom = b.dom(&format!("{base}/relabel?pool=api&address=api-dev%3A8080"));
    assert_eq!(count_rows(&dom, "steps"), 3, "input + two rules");
    assert!(element_text(&dom, "verdict").contains("Dropped by rule 1."));
    let dom = b.dom(&format!("{base}/relabel?pool=api&address=api-1%3A8080"));
    let steps = element_text(&dom, "steps");
    assert!(steps.contains("team=\"payments\""), "{steps}");
    assert!(element_text(&dom, "verdict").contains("Kept"));

    let dir = screenshot_dir(shots_tmp.path());
    let pages = [
        ("agent", "agent"),
        ("targets", "targets"),
        (
            "target",
            "target?pool=node&url=http%3A%2F%2F10.0.0.3%3A9100%2Fmetrics",
        ),
        ("service-discovery", "service-discovery"),
        ("remote-write", "remote-write"),
        ("relabel", "relabel?pool=api&address=api-1%3A8080"),
        ("config", "config"),
        ("flags", "flags"),
        ("status", "status"),
    ];
    for (name, path) in pages {
        b.screenshot(
            &format!("{base}/{path}"),
            &dir.join(format!("{name}.png")),
            1280,
            900,
        );
    }
    b.screenshot(
        &format!("{base}/targets"),
        &dir.join("targets-phone.png"),
        390,
        844,
    );
}
