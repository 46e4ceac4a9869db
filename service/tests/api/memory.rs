//! How the process uses memory.

use cart_test_support::cart_service_bin;
use cart_test_support::process::Service;

/// mimalloc's heap on transparent huge pages counted each touched 2 MiB region whole in
/// the RSS (idle 19.5 MiB, 9.4 without): the binary turns them off for itself.
#[tokio::test]
async fn the_service_runs_without_transparent_huge_pages() {
    let service = Service::start(cart_service_bin!(), &[]).await;

    let status = std::fs::read_to_string(format!("/proc/{}/status", service.pid())).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("THP_enabled:"))
        .unwrap_or_else(|| {
            panic!("this kernel reports no THP_enabled in /proc/<pid>/status:\n{status}")
        });
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}
