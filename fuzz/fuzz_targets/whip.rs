//! WHIP and WHEP requests (RFC 9725 and its WHEP sibling) through the
//! signaling service's router with a real SFU behind it: a method and a
//! path (`/whip`, `/whep`, a live session's resource or a made-up one),
//! headers (content type, a valid or broken bearer token, `If-Match`) and
//! a body from the input. Whatever comes, an answer, never a panic and
//! never a 500; a session the input manages to create is deleted again,
//! so that the service stays as it was.

#![no_main]

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use huddle_sfu::SfuConfig;
use huddle_signaling::auth::{mint, Claims};
use huddle_signaling::{AppState, SignalingConfig};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";

/// The service, built once: a runtime, an SFU on loopback, the router,
/// and a valid token for each of WHIP and WHEP.
struct Service {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    publish: String,
    view: String,
}

fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let router = runtime.block_on(async {
            let config = SfuConfig {
                bind: ([127, 0, 0, 1], 0).into(),
                ..SfuConfig::default()
            };
            let (sfu, events) = huddle_sfu::start(config).await.expect("SFU");
            let app = AppState::new(SignalingConfig::new(SECRET), Arc::new(sfu));
            tokio::spawn(huddle_signaling::dispatch::run(app.clone(), events));
            huddle_signaling::router(app)
        });
        let token = |publish: bool| {
            mint(
                SECRET,
                &Claims::new("fuzz", "room", publish, !publish, 3600),
            )
            .expect("token")
        };
        Service {
            runtime,
            router,
            publish: token(true),
            view: token(false),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let [how, headers, body @ ..] = data else {
        return;
    };
    let s = service();
    let whep = how & 1 != 0;
    let base = if whep { "/whep" } else { "/whip" };
    let method = match (how >> 1) & 3 {
        0 => Method::POST,
        1 => Method::PATCH,
        2 => Method::DELETE,
        _ => Method::OPTIONS,
    };
    let path = match (how >> 3) & 3 {
        0 => base.to_owned(),
        1 => format!("{base}/made-up"),
        2 => format!(
            "{base}/{}",
            String::from_utf8_lossy(body.get(..8).unwrap_or(body))
        ),
        _ => "/whip/".to_owned(),
    };
    let content_type = match headers & 3 {
        0 => "application/sdp",
        1 => "application/trickle-ice-sdpfrag",
        2 => "text/plain",
        _ => "application/sdp; charset=utf-8",
    };
    let token = match (headers >> 2) & 3 {
        0 if whep => s.view.clone(),
        0 => s.publish.clone(),
        1 => s.publish.clone(),
        2 => "not.a.token".to_owned(),
        _ => String::new(),
    };
    let Ok(path) = path.parse::<axum::http::Uri>() else {
        return;
    };
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type);
    if !token.is_empty() {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if headers & 0x10 != 0 {
        request = request.header(header::IF_MATCH, "\"x\"");
    }
    let Ok(request) = request.body(Body::from(body.to_vec())) else {
        return;
    };
    s.runtime.block_on(async {
        let response = s
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router always answers");
        assert_ne!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad input is a client error"
        );
        // A session made: end it (its resource is in Location).
        if response.status() == StatusCode::CREATED {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .expect("a created session has a Location")
                .to_owned();
            let delete = Request::builder()
                .method(Method::DELETE)
                .uri(location)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request");
            let gone = s.router.clone().oneshot(delete).await.expect("answer");
            assert!(gone.status().is_success(), "{}", gone.status());
        }
    });
});
