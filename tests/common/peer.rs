//! A second daemon on the same test world: another `dpsd run` with the same main file,
//! worker files and store (one MongoDB database), and an API port of its own — what two
//! hosts of one cluster look like, for what must hold across hosts (pauses, rate limits).

use std::path::PathBuf;

use super::{free_port, TestEnv};

/// The second daemon: its API.
pub struct Peer {
    pub api_port: u16,
}

impl Peer {
    /// The second daemon's API base URL with `path`.
    pub fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }
}

impl TestEnv {
    /// Starts a second `dpsd run` beside the first: the main file copied with another API
    /// port (into the same folder, so it reads the same `workers.d`), its log in `peer.log`.
    /// Killed when the test ends.
    pub fn start_peer(&self) -> Peer {
        let main = std::fs::read_to_string(self.config_path()).expect("read main config");
        let listen = format!("listen: 127.0.0.1:{}", self.api_port);
        assert!(main.contains(&listen), "the main file has no {listen:?}");
        let peer = Peer {
            api_port: free_port(),
        };
        let config: PathBuf = self.path("dpsd-peer.yaml");
        let text = main.replace(&listen, &format!("listen: 127.0.0.1:{}", peer.api_port));
        std::fs::write(&config, text).expect("write the peer's main file");
        self.start_daemon_at(&config, "peer.log");
        peer
    }
}
