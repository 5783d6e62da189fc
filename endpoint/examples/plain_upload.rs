//! The reference for the endpoint's throughput benchmark
//! (`bench/endpoint.sh`): a plain upload server on the same HTTP stack
//! (actix-web, actix-multipart) with the same durability — the `report`
//! part streamed to a file in DIR, synced, renamed into place, the
//! directory synced — and nothing else: no sender check, no header check,
//! no queue. The difference between the two is what medseal's intake costs.
//! Like the endpoint, which keeps one copy of each distinct report, it keeps
//! one file per uploaded file name: a repeat replaces it.
//!
//! Usage: plain_upload ADDR DIR

use actix_multipart::Multipart;
use actix_web::{App, HttpResponse, HttpServer, web};
use futures_util::StreamExt;
use std::io::Write;
use std::path::PathBuf;

async fn upload(dir: web::Data<PathBuf>, mut form: Multipart) -> HttpResponse {
    let mut stored = None;
    while let Some(Ok(mut field)) = form.next().await {
        if field.name() != Some("report") {
            while let Some(Ok(_)) = field.next().await {}
            continue;
        }
        let name: String = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .unwrap_or("upload")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect();
        let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir.get_ref()) else {
            return HttpResponse::InternalServerError().finish();
        };
        while let Some(chunk) = field.next().await {
            match chunk {
                Ok(c) if tmp.write_all(&c).is_ok() => {}
                _ => return HttpResponse::BadRequest().finish(),
            }
        }
        let dir = dir.get_ref().clone();
        let done = web::block(move || -> std::io::Result<String> {
            tmp.as_file().sync_all()?;
            let target = dir.join(format!("{name}.upload"));
            tmp.persist(&target).map_err(|e| e.error)?;
            std::fs::File::open(&dir)?.sync_all()?;
            Ok(target.display().to_string())
        })
        .await;
        match done {
            Ok(Ok(name)) => stored = Some(name),
            _ => return HttpResponse::InternalServerError().finish(),
        }
    }
    match stored {
        Some(id) => HttpResponse::Accepted().json(serde_json::json!({ "id": id })),
        None => HttpResponse::BadRequest().finish(),
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: plain_upload ADDR DIR");
        std::process::exit(2);
    };
    let dir = web::Data::new(PathBuf::from(dir));
    actix_web::rt::System::new().block_on(
        HttpServer::new(move || {
            App::new()
                .app_data(dir.clone())
                .route("/upload", web::post().to(upload))
        })
        .bind(addr)?
        .run(),
    )
}
