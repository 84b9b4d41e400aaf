//! The FRP tunneling manifest (inventory §6.4) controllers get when
//! `spec.tunneling.enabled`: an `frpc` client in `kube-system` that connects
//! to the management cluster's FRP server and exposes the API server, either
//! as a plain TCP tunnel on remote port 6443 (`tunnel` mode) or as an HTTP
//! CONNECT multiplexer for the control-plane endpoint's host (`proxy` mode).
//! k0s applies everything under `/var/lib/k0s/manifests`.

use drover_shared::api::bootstrap::TunnelingMode;

use crate::model::NodeFile;

/// Where the manifest is written.
pub const MANIFEST_PATH: &str = "/var/lib/k0s/manifests/k0smotron-tunneling/manifest.yaml";
/// The frpc image k0smotron deploys.
pub const FRPC_IMAGE: &str = "snowdreamtech/frpc:0.51.3";

/// What the handler resolves for the tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// `spec.tunneling.serverAddress` (detected by K0sControlPlane when empty).
    pub server_address: String,
    /// `spec.tunneling.serverNodePort`.
    pub server_port: i32,
    /// The `value` of the `<cluster>-frp-token` Secret.
    pub token: String,
    /// The in-cluster API service IP ([`api_service_ip`]).
    pub local_ip: String,
    /// `spec.tunneling.mode`.
    pub mode: TunnelingMode,
    /// `Cluster.spec.controlPlaneEndpoint.host` (proxy mode's domain).
    pub endpoint_host: String,
}

/// The `kubernetes` Service IP: the first address after the network address
/// of the first service CIDR (`Cluster.spec.clusterNetwork.services`), or
/// `10.96.0.1` when none (or an IPv6 one, which k0s also numbers ::1) is given.
pub fn api_service_ip(service_cidrs: &[String]) -> String {
    let Some(cidr) = service_cidrs.first() else {
        return "10.96.0.1".into();
    };
    let (addr, bits) = cidr.split_once('/').unwrap_or((cidr, "32"));
    if let (Ok(ip), Ok(bits)) = (addr.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>())
        && bits <= 32
    {
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        return std::net::Ipv4Addr::from((u32::from(ip) & mask).wrapping_add(1)).to_string();
    }
    if let (Ok(ip), Ok(bits)) = (addr.parse::<std::net::Ipv6Addr>(), bits.parse::<u32>())
        && bits <= 128
    {
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits)
        };
        return std::net::Ipv6Addr::from((u128::from(ip) & mask).wrapping_add(1)).to_string();
    }
    "10.96.0.1".into()
}

/// The manifest file.
pub fn file(t: &Tunnel) -> NodeFile {
    let proxy = match t.mode {
        TunnelingMode::Proxy => format!(
            "    type = tcpmux\n    custom_domains = {}\n    multiplexer = httpconnect\n",
            t.endpoint_host
        ),
        TunnelingMode::Tunnel => "    type = tcp\n    remote_port = 6443\n".to_string(),
    };
    let content = format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: frpc-config
  namespace: kube-system
data:
  frpc.ini: |
    [common]
    authentication_method = token
    server_addr = {addr}
    server_port = {port}
    token = {token}

    [kube-apiserver]
    local_ip = {local_ip}
    local_port = 443
{proxy}---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: frpc
  namespace: kube-system
spec:
  replicas: 1
  selector:
    matchLabels:
      app: frpc
  template:
    metadata:
      labels:
        app: frpc
    spec:
      containers:
        - name: frpc
          image: {FRPC_IMAGE}
          imagePullPolicy: IfNotPresent
          volumeMounts:
            - name: frpc-config
              mountPath: /etc/frp/frpc.ini
              subPath: frpc.ini
      tolerations:
        - key: node-role.kubernetes.io/master
          operator: Exists
          effect: NoSchedule
        - key: node-role.kubernetes.io/control-plane
          operator: Exists
          effect: NoSchedule
      volumes:
        - name: frpc-config
          configMap:
            name: frpc-config
            items:
              - key: frpc.ini
                path: frpc.ini
"#,
        addr = t.server_address,
        port = t.server_port,
        token = t.token,
        local_ip = t.local_ip,
    );
    NodeFile {
        path: MANIFEST_PATH.into(),
        content,
        permissions: "0644".into(),
        spec_index: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ip() {
        assert_eq!(api_service_ip(&[]), "10.96.0.1");
        assert_eq!(api_service_ip(&["10.128.0.0/12".into()]), "10.128.0.1");
        assert_eq!(api_service_ip(&["10.96.0.5/12".into()]), "10.96.0.1");
        assert_eq!(api_service_ip(&["fd00:10::/108".into()]), "fd00:10::1");
    }

    #[test]
    fn manifest_parses_as_two_documents() {
        for mode in [TunnelingMode::Tunnel, TunnelingMode::Proxy] {
            let f = file(&Tunnel {
                server_address: "203.0.113.7".into(),
                server_port: 31700,
                token: "s3cr3t".into(),
                local_ip: "10.96.0.1".into(),
                mode,
                endpoint_host: "cp.example.com".into(),
            });
            let docs: Vec<serde_json::Value> =
                serde_saphyr::from_multiple(&f.content).expect("valid YAML");
            assert_eq!(docs.len(), 2);
            assert_eq!(docs[0]["kind"], "ConfigMap");
            let ini = docs[0]["data"]["frpc.ini"].as_str().unwrap();
            assert!(ini.contains("server_port = 31700\n"));
            assert!(ini.contains("token = s3cr3t\n"));
            match mode {
                TunnelingMode::Tunnel => assert!(ini.ends_with("type = tcp\nremote_port = 6443\n")),
                TunnelingMode::Proxy => assert!(ini.contains("custom_domains = cp.example.com\n")),
            }
            assert_eq!(
                docs[1]["spec"]["template"]["spec"]["containers"][0]["image"],
                FRPC_IMAGE
            );
        }
    }
}
