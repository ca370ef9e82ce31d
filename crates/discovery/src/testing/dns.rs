//! A real DNS server for tests: dnsmasq (Debian's `dnsmasq-base`) bound to
//! 127.0.0.1 on a chosen port, serving only the records given on its
//! command line, killed by PID when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Dnsmasq {
    /// Starts dnsmasq with `records` (e.g. `--srv-host=...`) and waits
    /// (at most 10 s) until it listens.
    pub fn start(port: u16, records: &[&str]) -> Dnsmasq {
        let mut cmd = Command::new(dnsmasq_path());
        cmd.args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            // Names under test. are answered here (NXDOMAIN when unknown)
            // instead of being forwarded.
            "--local=/test/",
        ])
        .arg(format!("--port={port}"))
        .args(records)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start dnsmasq (apt-get install dnsmasq-base): {e}"),
        };
        let server = Dnsmasq { child, port };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("dnsmasq did not start listening on port {}", self.port);
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
    }
}

fn dnsmasq_path() -> &'static str {
    if std::path::Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    }
}

/// A loopback port free for both UDP and TCP (DNS uses both).
pub fn free_port() -> u16 {
    // Asking the kernel for a UDP port and checking TCP is good enough on
    // a test host; bounded so a pathological host fails instead of hanging.
    for _ in 0..1000 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", addr.port())).is_ok() {
            return addr.port();
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}
