//! The worked example of docs/integrations.md ("Writing your own
//! destination"), compiled with the workspace so it cannot go stale.

use medseal_integrations::{DeliveryError, Destination, Parcel, ProgressHandle, Receipt};

/// Files reports into a document store over its own HTTP API.
pub struct DocStore {
    client: reqwest::blocking::Client,
    url: String,
}

impl Destination for DocStore {
    fn kind(&self) -> &'static str {
        "docstore"
    }

    // The sealed file is enough; return true to get `parcel.opened`
    // (manifest, PDF, photos) filled in.
    fn needs_opened_report(&self) -> bool {
        false
    }

    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError> {
        // 1. Idempotency: the same key on every retry. Ask first, or let
        //    the service de-duplicate on it.
        let existing = self
            .client
            .get(format!(
                "{}/documents/by-key/{}",
                self.url, parcel.idempotency_key
            ))
            .send()
            .map_err(|e| medseal_integrations::http::unreachable("docstore", &e))?;
        if existing.status().is_success() {
            let id = existing.text().unwrap_or_default();
            return Ok(Receipt {
                id,
                location: None,
                already_present: true,
            });
        }
        // 2. Stream the sealed file with progress.
        progress.begin(parcel.size);
        let body = medseal_integrations::http::body(
            std::fs::File::open(parcel.sealed)?,
            parcel.size,
            progress,
        );
        let resp = self
            .client
            .put(format!("{}/documents/{}", self.url, parcel.idempotency_key))
            .header("Content-Type", "application/vnd.medseal")
            .body(body)
            .send()
            .map_err(|e| medseal_integrations::http::unreachable("docstore", &e))?;
        // 3. Let the shared rules say retry-or-not for non-2xx answers.
        let resp = medseal_integrations::http::check("docstore", resp)?;
        Ok(Receipt {
            id: resp.text().unwrap_or_default(),
            location: None,
            already_present: false,
        })
    }
}

fn main() {
    let store = DocStore {
        client: reqwest::blocking::Client::new(),
        url: "https://docs.example.org".into(),
    };
    println!("a {} destination for {}", store.kind(), store.url);
}
