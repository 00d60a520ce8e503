//! The host ICE candidate of a UDP socket address, as the `rtc` core takes
//! it (`RTCPeerConnection::add_local_candidate`). The SFU announces its one
//! port this way; the load tool and the test harness their clients' sockets.

use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::shared::error::Error as RtcError;
use std::net::SocketAddr;

/// A UDP host candidate (component 1) for `addr`.
pub fn host_candidate(addr: SocketAddr) -> Result<RTCIceCandidateInit, RtcError> {
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    RTCIceCandidate::from(&candidate).to_json()
}

#[cfg(test)]
mod tests {
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
