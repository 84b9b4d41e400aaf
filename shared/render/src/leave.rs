//! The etcd-leave-on-shutdown helpers for controllers running k0s older than
//! v1.31.6 (newer k0s has the EtcdMember CRD, which K0sControlPlane uses
//! instead). When K0sControlPlane removes a controller it annotates the
//! Machine's `ControlNode` with `k0smotron.io/leave=true`; at shutdown the
//! helper finds the node's `AUTOPILOT_HOSTNAME` in the k0s process
//! environment, reads the annotation and runs `k0s etcd leave` until it
//! succeeds.
//!
//! Same behaviour as k0smotron, with drover's own scripts, and two fixes: the
//! script is written 0755 (k0smotron: 0777, world-writable and run as root),
//! and the SysV and OpenRC services run the script when *stopping* at
//! shutdown (k0smotron's SysV script ran it in the background at boot).

use crate::model::NodeFile;

/// The helper script.
pub const SCRIPT_PATH: &str = "/etc/bin/k0sleave.sh";

/// Whether `version` (for example `v1.31.5+k0s.0`) is older than v1.31.6.
/// `None` when it does not parse as `[v]MAJOR.MINOR.PATCH[-pre][+build]`.
pub fn needs_leave_helpers(version: &str) -> Option<bool> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let v = v.split('+').next().unwrap_or(v);
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, !p.is_empty()),
        None => (v, false),
    };
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let (Some(Some(major)), Some(Some(minor)), Some(Some(patch)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let triple = (major, minor, patch);
    Some(triple < (1, 31, 6) || (triple == (1, 31, 6) && pre))
}

/// The directory of the service files: `workingDir`, else `/etc/k0s`.
fn dir(working_dir: &str) -> &str {
    if working_dir.is_empty() {
        "/etc/k0s"
    } else {
        working_dir.trim_end_matches('/')
    }
}

fn file(path: String, content: String, permissions: &str) -> NodeFile {
    NodeFile {
        path,
        content,
        permissions: permissions.into(),
        spec_index: None,
    }
}

/// The script and the systemd, OpenRC and SysV service definitions.
pub fn files(working_dir: &str, k0s_path: &str) -> Vec<NodeFile> {
    let d = dir(working_dir);
    let script = format!(
        r#"#!/bin/sh
# Leave etcd if K0sControlPlane marked this controller's ControlNode with k0smotron.io/leave=true.
K0S={k0s_path}
pid=$("$K0S" status 2>/dev/null | awk '/Process ID/ {{ print $3 }}')
[ -n "$pid" ] || exit 0
node=$(tr '\0' '\n' < "/proc/$pid/environ" | sed -n 's/^AUTOPILOT_HOSTNAME=//p')
[ -n "$node" ] || exit 0
leaving=$("$K0S" kubectl get controlnodes "$node" -o jsonpath='{{.metadata.annotations.k0smotron\.io/leave}}')
if [ "$leaving" = "true" ]; then
    until "$K0S" etcd leave; do
        sleep 1
    done
fi
"#
    );
    let systemd = format!(
        "[Unit]\nDescription=Leave the k0s etcd cluster at shutdown when asked to\nAfter=multi-user.target k0scontroller.service\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\nExecStop={SCRIPT_PATH}\nTimeoutStopSec=180\n\n[Install]\nWantedBy=multi-user.target\n"
    );
    let openrc = format!(
        "#!/sbin/openrc-run\n\ndescription=\"Leave the k0s etcd cluster at shutdown when asked to\"\n\nstart() {{\n    ebegin \"Checking whether to leave etcd\"\n    {SCRIPT_PATH}\n    eend $?\n}}\n"
    );
    let sysv = format!(
        r#"#!/bin/sh
### BEGIN INIT INFO
# Provides:          k0sleave
# Required-Start:    $remote_fs
# Required-Stop:     $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: Leave the k0s etcd cluster at shutdown when asked to
### END INIT INFO
# chkconfig: 2345 99 01

lock=/var/lock/subsys/k0sleave

case "$1" in
    start)
        mkdir -p /var/lock/subsys && touch "$lock"
        ;;
    stop)
        {SCRIPT_PATH}
        rm -f "$lock"
        ;;
    status)
        [ -f "$lock" ]
        ;;
    restart|force-reload)
        ;;
    *)
        echo "Usage: $0 {{start|stop|status|restart}}"
        exit 1
        ;;
esac
"#
    );
    vec![
        file(SCRIPT_PATH.into(), script, "0755"),
        file(format!("{d}/k0sleave.service"), systemd, "0644"),
        file(format!("{d}/k0sleave-openrc"), openrc, "0644"),
        file(format!("{d}/k0sleave-sysv"), sysv, "0644"),
    ]
}

/// The commands registering the service with whichever init systems exist,
/// each allowed to fail.
pub fn commands(working_dir: &str) -> Vec<String> {
    let d = dir(working_dir);
    vec![
        format!(
            "(command -v systemctl > /dev/null 2>&1 && install -m 0644 {d}/k0sleave.service /etc/systemd/system/k0sleave.service && systemctl daemon-reload && systemctl enable --now --no-block k0sleave.service) || true"
        ),
        format!(
            "(command -v rc-update > /dev/null 2>&1 && install -m 0755 {d}/k0sleave-openrc /etc/init.d/k0sleave && rc-update add k0sleave shutdown) || true"
        ),
        format!(
            "(command -v update-rc.d > /dev/null 2>&1 && install -m 0755 {d}/k0sleave-sysv /etc/init.d/k0sleave && update-rc.d k0sleave defaults && service k0sleave start) || true"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_gate() {
        assert_eq!(needs_leave_helpers("v1.31.5+k0s.0"), Some(true));
        assert_eq!(needs_leave_helpers("v1.30.9+k0s.1"), Some(true));
        assert_eq!(needs_leave_helpers("v1.31.6-rc.1+k0s.0"), Some(true));
        assert_eq!(needs_leave_helpers("v1.31.6+k0s.0"), Some(false));
        assert_eq!(needs_leave_helpers("1.33.1"), Some(false));
        assert_eq!(needs_leave_helpers("latest"), None);
        assert_eq!(needs_leave_helpers("v1.31"), None);
    }
}
