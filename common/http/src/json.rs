//! `ApiJson<T>`: axum's JSON extractor with rejections turned into problem+json with stable
//! codes (`invalid_json`, `unsupported_media_type`, `payload_too_large`), and JSON responses.
//! Every Loom request body is a JSON object, so `ApiJson` refuses anything else (serde would
//! otherwise read a struct from an array of its fields in order: `[null, null]` as a body);
//! `ApiJsonAny` is for the few routes that also take a bare array.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::marker::PhantomData;

use crate::Problem;

/// A JSON object body read into `T`.
pub struct ApiJson<T>(pub T);

/// A JSON body of any shape (object or array) read into `T`.
pub struct ApiJsonAny<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<ObjectOnly<T>>::from_request(req, state).await {
            Ok(axum::Json(ObjectOnly(value))) => Ok(ApiJson(value)),
            Err(rejection) => Err(rejection_problem(rejection)),
        }
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJsonAny<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJsonAny(value)),
            Err(rejection) => Err(rejection_problem(rejection)),
        }
    }
}

/// `T` read only from a JSON object: an array, string, number, bool or null is refused as
/// "expected a JSON object" before `T` sees it.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

fn rejection_problem(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a body with content-type application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the body does not have the expected shape: {}", e.body_text()),
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE)
        }
        other => Problem::new(other.status(), "invalid_body", other.body_text()),
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Body {
        a: Option<u32>,
        #[serde(default)]
        b: Vec<String>,
    }

    #[test]
    fn only_objects_are_read_as_bodies() {
        let cases: &[(&str, Option<Body>)] = &[
            (r#"{"a": 1}"#, Some(Body { a: Some(1), b: vec![] })),
            (r#"{"b": ["x"]}"#, Some(Body { a: None, b: vec!["x".into()] })),
            ("[null, null]", None), // serde alone would take this as {a: null, b: null}
            ("[1, []]", None),
            ("null", None),
            ("\"text\"", None),
            ("7", None),
        ];
        for (json, want) in cases {
            let got = serde_json::from_str::<ObjectOnly<Body>>(json).ok().map(|o| o.0);
            assert_eq!(&got, want, "{json}");
        }
        let v: ObjectOnly<serde_json::Value> = serde_json::from_str(r#"{"k": [1]}"#).unwrap();
        assert_eq!(v.0["k"][0], 1);
        let err = serde_json::from_str::<ObjectOnly<Body>>("[]").err().unwrap().to_string();
        assert!(err.contains("a JSON object"), "{err}");
    }
}
