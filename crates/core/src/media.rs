//! Images in a request. OpenAI clients send a URL (`data:` with base64, or `http(s)`),
//! Ollama clients bare base64; both become one [`Image`] that keeps what the client
//! sent byte for byte, so an image reaches an upstream of the client's own dialect
//! exactly as it left the client.

use serde::{Deserialize, Serialize};

/// An image input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// A `data:` URL (base64) or an `http(s)` URL, as the client sent it.
    pub url: String,
    /// OpenAI's `detail` (`auto`, `low`, `high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Why an image URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Not a `data:`, `http:` or `https:` URL.
    #[error("an image URL must be a data: URL or an http(s) URL")]
    Scheme,
    /// A `data:` URL that is not base64 image data.
    #[error("a data: image URL must look like data:image/...;base64,<data>")]
    DataUrl,
    /// Base64 that does not decode.
    #[error("the image is not valid base64")]
    Base64,
}

impl Image {
    /// An image from an OpenAI URL, checked for its form.
    pub fn from_url(url: String, detail: Option<String>) -> Result<Image, ImageError> {
        let lower = url.get(..8).unwrap_or(&url).to_ascii_lowercase();
        if lower.starts_with("data:") {
            let image = Image { url, detail };
            let payload = image.base64().ok_or(ImageError::DataUrl)?;
            check_base64(payload)?;
            Ok(image)
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            Ok(Image { url, detail })
        } else {
            Err(ImageError::Scheme)
        }
    }

    /// An image from Ollama's bare base64, as a `data:` URL whose media type is
    /// sniffed from the first bytes (PNG, JPEG, GIF, WebP; anything else is
    /// `application/octet-stream`, which says honestly that it is unknown).
    pub fn from_base64(data: String) -> Result<Image, ImageError> {
        let data = data.trim().to_owned();
        check_base64(&data)?;
        let media = sniff(&data);
        Ok(Image { url: format!("data:{media};base64,{data}"), detail: None })
    }

    /// The base64 payload of a `data:` URL; `None` for an `http(s)` URL.
    pub fn base64(&self) -> Option<&str> {
        let rest = self.url.get(..5).filter(|p| p.eq_ignore_ascii_case("data:")).map(|_| &self.url[5..])?;
        let (meta, payload) = rest.split_once(',')?;
        meta.to_ascii_lowercase().ends_with(";base64").then_some(payload)
    }
}

/// Checks that `data` is base64 (standard alphabet, padding optional) without decoding
/// it all: the alphabet, and a length no base64 text can be short of.
fn check_base64(data: &str) -> Result<(), ImageError> {
    let body = data.trim_end_matches('=');
    let ok = !body.is_empty()
        && data.len() - body.len() <= 2
        && body.len() % 4 != 1
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if ok { Ok(()) } else { Err(ImageError::Base64) }
}

/// The media type of base64 image data, from its first bytes.
fn sniff(data: &str) -> &'static str {
    // Base64 of each format's magic number.
    const KNOWN: [(&str, &str); 4] = [
        ("iVBORw0KGgo", "image/png"),
        ("/9j/", "image/jpeg"),
        ("R0lGOD", "image/gif"),
        ("UklGR", "image/webp"),
    ];
    KNOWN.iter().find(|(magic, _)| data.starts_with(magic)).map_or("application/octet-stream", |(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

    #[test]
    fn data_urls_keep_their_bytes_and_give_their_payload() {
        let url = format!("data:image/png;base64,{PNG}");
        let image = Image::from_url(url.clone(), Some("low".into())).unwrap();
        assert_eq!(image.url, url);
        assert_eq!(image.base64(), Some(PNG));
        let web = Image::from_url("https://example.com/cat.png".into(), None).unwrap();
        assert_eq!(web.base64(), None);
    }

    #[test]
    fn bare_base64_becomes_a_sniffed_data_url() {
        let image = Image::from_base64(PNG.into()).unwrap();
        assert_eq!(image.url, format!("data:image/png;base64,{PNG}"));
        assert_eq!(image.base64(), Some(PNG), "the Ollama form survives the round trip");
        assert!(Image::from_base64("AAAA".into()).unwrap().url.starts_with("data:application/octet-stream"));
    }

    #[test]
    fn bad_images_are_refused() {
        assert_eq!(Image::from_url("ftp://x/y.png".into(), None), Err(ImageError::Scheme));
        assert_eq!(Image::from_url("data:image/png,rawbytes".into(), None), Err(ImageError::DataUrl));
        assert_eq!(Image::from_url("data:image/png;base64,@@@@".into(), None), Err(ImageError::Base64));
        assert_eq!(Image::from_base64(String::new()), Err(ImageError::Base64));
        assert_eq!(Image::from_base64("abcde".into()), Err(ImageError::Base64));
    }
}
