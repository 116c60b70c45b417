//! Puts the live channels configured with a multicast group on the air: each group's emitter
//! session (built by the session core, `rtsp::session::multicast`) goes to its shard as a
//! PLAY and a Start, like a viewer's, and runs until shutdown.

use std::net::IpAddr;

use crate::config::ServerConfig;
use crate::rtsp::session::SessionCore;
use crate::shard::{PlayEnd, PlayRate, ShardCommand, ShardHandle};

/// Starts every `[multicast]` group of `config`; a group that cannot start is logged and the
/// rest of the server runs on.
pub(super) fn start_groups(
    core: &mut SessionCore,
    shards: &[ShardHandle],
    config: &ServerConfig,
    local_ip: IpAddr,
) {
    for (name, base) in &config.multicast {
        let cname = format!("shardcast@{local_ip}");
        let added = core.add_multicast(
            name,
            *base,
            config.multicast_ttl,
            cname,
            &mut rand::thread_rng(),
        );
        let (shard, setup) = match added {
            Ok(added) => added,
            Err(e) => {
                tracing::error!(channel = %name, group = %base, "multicast not started: {e}");
                continue;
            }
        };
        let id = setup.id;
        let tracks = setup.tracks.len();
        // Nothing waits for the answer: the emitter joins the channel's live edge.
        let (reply, _) = tokio::sync::oneshot::channel();
        let play = ShardCommand::Play {
            id,
            setup: Some(setup),
            start_npt_secs: None,
            end: PlayEnd::Media,
            rate: PlayRate::NORMAL,
            reply,
        };
        let sent = shards[shard]
            .send(play)
            .and_then(|()| shards[shard].send(ShardCommand::Start { id }));
        match sent {
            Ok(()) => {
                tracing::info!(channel = %name, group = %base, ttl = config.multicast_ttl, tracks, shard, "multicast group on air")
            }
            Err(e) => tracing::error!(channel = %name, group = %base, "multicast not started: {e}"),
        }
    }
}
