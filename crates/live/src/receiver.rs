//! The receiving end's sessions: a network thread receives, authenticates and files frames
//! into a jitter buffer the moment they arrive (so arrival times are honest), and tells
//! sessions apart; the playout side asks it for one frame per period and for its state.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::jitter::{JitterBuffer, JitterStats, Playout};
use crate::link::{Event, LinkStats, ReceiverLink};
use crate::packet::{Key, StreamInfo};

/// A session whose sender has been silent this long is over.
const QUIET_END: Duration = Duration::from_secs(2);

/// What the network thread shares with the playout side.
struct Shared {
    jitter: JitterBuffer,
    /// Current sender and when its session began (the arrival clock's zero).
    session: Option<(SocketAddr, Instant)>,
    /// Sessions begun so far.
    sessions: u64,
    /// Low-band codes per frame of the current session's stream.
    low_band: usize,
    /// The sender said bye.
    ended: bool,
    last_packet: Instant,
    link: LinkStats,
    /// Why the network thread stopped, if it did.
    failed: Option<Error>,
    /// Jitter counters of sessions already over.
    earlier: JitterStats,
}

/// The receiver's state, as the playout side needs it once a period.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverState {
    /// Sessions begun so far: a change means a new stream (reset the decoder).
    pub sessions: u64,
    /// Low-band codes per frame of the current session's stream.
    pub low_band: usize,
    /// A sender is streaming.
    pub active: bool,
    /// The session is over: its sender said bye and every frame was played, or it fell
    /// silent.
    pub over: bool,
    /// Packets accepted and refused so far.
    pub link: LinkStats,
}

/// The jitter buffer's figures, for a status line.
#[derive(Debug, Clone)]
pub struct BufferState {
    /// Frames waiting.
    pub depth: usize,
    /// Measured arrival jitter, seconds.
    pub jitter_seconds: f64,
    /// Counters of the current session.
    pub stats: JitterStats,
    /// The current sender, if any.
    pub peer: Option<SocketAddr>,
    /// Packets accepted and refused so far.
    pub link: LinkStats,
}

/// A listening receiver; its network thread runs until the process ends.
pub struct Receiver {
    shared: Arc<Mutex<Shared>>,
    local: SocketAddr,
}

impl Receiver {
    /// Listens on `listen` for senders with `key` whose streams fit `info`, buffering up to
    /// `max_depth` frames of `frame_seconds` each.
    pub fn start(listen: SocketAddr, key: Key, info: StreamInfo, frame_seconds: f64, max_depth: usize) -> Result<Self> {
        let new_buffer = move || JitterBuffer::new(frame_seconds, 1, max_depth);
        let shared = Arc::new(Mutex::new(Shared {
            jitter: new_buffer(),
            session: None,
            sessions: 0,
            low_band: 0,
            ended: false,
            last_packet: Instant::now(),
            link: LinkStats::default(),
            failed: None,
            earlier: JitterStats::default(),
        }));
        let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Result<SocketAddr>>();
        let network = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("receive-network".into())
            .spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(listen_loop(listen, key, info, network, new_buffer, bound_tx)),
                Err(e) => drop(bound_tx.send(Err(Error::io("cannot start the network thread", e)))),
            })
            .map_err(|e| Error::io("cannot start the network thread", e))?;
        let local = bound_rx.recv().map_err(|_| Error::Network("the network thread failed".into()))??;
        Ok(Self { shared, local })
    }

    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The state now, or why the network thread stopped.
    pub fn state(&self) -> Result<ReceiverState> {
        let mut s = lock(&self.shared);
        if let Some(e) = s.failed.take() {
            return Err(e);
        }
        let active = s.session.is_some();
        let drained = s.ended && s.jitter.depth() == 0;
        let quiet = active && s.last_packet.elapsed() > QUIET_END;
        Ok(ReceiverState {
            sessions: s.sessions,
            low_band: s.low_band,
            active,
            over: active && (drained || quiet),
            link: s.link,
        })
    }

    /// Closes the current session (after [`ReceiverState::over`]).
    pub fn end_session(&self) {
        let mut s = lock(&self.shared);
        s.session = None;
        s.ended = false;
    }

    /// The next frame period's playout, on the current session's clock.
    pub fn next_frame(&self) -> Playout {
        let mut s = lock(&self.shared);
        let now = s.session.map_or(0.0, |(_, since)| since.elapsed().as_secs_f64());
        s.jitter.pop(now)
    }

    /// The jitter buffer's figures.
    pub fn buffer(&self) -> BufferState {
        let s = lock(&self.shared);
        BufferState {
            depth: s.jitter.depth(),
            jitter_seconds: s.jitter.jitter_seconds(),
            stats: s.jitter.stats(),
            peer: s.session.map(|(peer, _)| peer),
            link: s.link,
        }
    }

    /// Counters of every session so far, and the link's.
    pub fn totals(&self) -> (JitterStats, LinkStats) {
        let mut s = lock(&self.shared);
        let jitter = s.earlier + s.jitter.stats();
        s.earlier = JitterStats::default();
        (jitter, s.link)
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Receives until the process ends; every authentic frame goes into the jitter buffer.
async fn listen_loop(
    listen: SocketAddr,
    key: Key,
    info: StreamInfo,
    shared: Arc<Mutex<Shared>>,
    new_buffer: impl Fn() -> JitterBuffer,
    bound: std::sync::mpsc::Sender<Result<SocketAddr>>,
) {
    let mut link = match ReceiverLink::bind(listen, &key, info).await {
        Ok(link) => link,
        Err(e) => {
            let _ = bound.send(Err(e));
            return;
        }
    };
    let _ = bound.send(link.local_addr());
    loop {
        let event = link.next().await;
        let mut s = lock(&shared);
        s.link = link.stats();
        match event {
            Ok(Event::Started { peer, info, .. }) => {
                s.low_band = usize::from(info.low_band);
                let finished = std::mem::replace(&mut s.jitter, new_buffer()).stats();
                s.earlier = s.earlier + finished;
                s.session = Some((peer, Instant::now()));
                s.sessions += 1;
                s.ended = false;
                s.last_packet = Instant::now();
            }
            Ok(Event::Frames { first, codes }) => {
                let Some((_, since)) = s.session else { continue };
                let arrival = since.elapsed().as_secs_f64();
                s.last_packet = Instant::now();
                for f in 0..codes.frames() {
                    s.jitter.insert(u64::from(first) + f as u64, codes.frame(f).to_vec(), arrival);
                }
            }
            Ok(Event::Ended) => s.ended = true,
            Ok(Event::Dropped(_) | Event::Stale) => {}
            Err(e) => {
                s.failed = Some(e);
                return;
            }
        }
    }
}
