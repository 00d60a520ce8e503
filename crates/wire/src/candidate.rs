//! Host ICE candidates of a socket address, as the `rtc` core takes them
//! (`RTCPeerConnection::add_local_candidate`). The SFU announces its port
//! this way (UDP, and TCP passive for ICE-TCP); the load tool and the test
//! harness their clients' sockets.

use rtc::ice::tcp_type::TcpType;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::shared::error::Error as RtcError;
use std::net::SocketAddr;

/// A UDP host candidate (component 1) for `addr`.
pub fn host_candidate(addr: SocketAddr) -> Result<RTCIceCandidateInit, RtcError> {
    host(addr, "udp", TcpType::Unspecified)
}

/// A passive TCP host candidate (RFC 6544 §4.5, component 1) for `addr`:
/// the client connects to it. Its priority is below the UDP candidate's
/// (RFC 6544 §4.2), so a client that can use UDP does.
pub fn tcp_passive_candidate(addr: SocketAddr) -> Result<RTCIceCandidateInit, RtcError> {
    host(addr, "tcp", TcpType::Passive)
}

/// A host candidate (component 1) for `addr` over `network`.
fn host(
    addr: SocketAddr,
    network: &str,
    tcp_type: TcpType,
) -> Result<RTCIceCandidateInit, RtcError> {
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: network.to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        tcp_type,
    }
    .new_candidate_host()?;
    RTCIceCandidate::from(&candidate).to_json()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tcp_candidate_is_passive_and_below_udp() {
        let addr = "127.0.0.1:7882".parse().expect("addr");
        let tcp = super::tcp_passive_candidate(addr).expect("candidate");
        assert!(
            tcp.candidate.contains(" tcp ")
                && tcp
                    .candidate
                    .contains("127.0.0.1 7882 typ host tcptype passive"),
            "{}",
            tcp.candidate
        );
        let priority = |c: &str| -> u32 {
            c.split_whitespace()
                .nth(3)
                .and_then(|p| p.parse().ok())
                .expect("priority")
        };
        let udp = super::host_candidate(addr).expect("candidate");
        assert!(priority(&tcp.candidate) < priority(&udp.candidate));
    }

    #[test]
    fn names_the_address() {
        let c = super::host_candidate("127.0.0.1:7882".parse().expect("addr")).expect("candidate");
        assert!(
            c.candidate.contains("127.0.0.1 7882 typ host"),
            "{}",
            c.candidate
        );
    }
}
