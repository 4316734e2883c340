//! A TCP proxy the test controls, between a replica and its database: it forwards, it
//! holds every byte (a link that drops packets: nothing is refused, nothing arrives), or it
//! resets every connection and refuses new ones (a link that is down).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Up,
    /// Connections stay open and accepted, but no byte passes either way.
    Stalled,
    /// Every connection is closed at once, and new ones too.
    Down,
}

pub struct Proxy {
    pub port: u16,
    link: watch::Sender<Link>,
    server: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (link, links) = watch::channel(Link::Up);
        let upstream = upstream.to_owned();
        let server = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if *links.borrow() == Link::Down {
                    drop(client);
                    continue;
                }
                tokio::spawn(forward(client, upstream.clone(), links.clone()));
            }
        });
        Proxy { port, link, server }
    }

    pub fn set(&self, link: Link) {
        let _ = self.link.send(link);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(client: TcpStream, upstream: String, links: watch::Receiver<Link>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pipe(client_read, server_write, links.clone()) => {}
        () = pipe(server_read, client_write, links) => {}
    }
}

/// Copies one direction while the link is up, holds while it is stalled, ends when it is down.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut links: watch::Receiver<Link>,
) {
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let link = *links.borrow_and_update();
        match link {
            Link::Down => return,
            Link::Stalled => {
                if links.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Link::Up => {}
        }
        tokio::select! {
            read = from.read(&mut buffer) => {
                let Ok(read) = read else { return };
                if read == 0 {
                    return;
                }
                // A stall that begins now holds what was read until the link is up again.
                loop {
                    let link = *links.borrow_and_update();
                    match link {
                        Link::Down => return,
                        Link::Up => break,
                        Link::Stalled => {
                            if links.changed().await.is_err() {
                                return;
                            }
                        }
                    }
                }
                if to.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
            changed = links.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
