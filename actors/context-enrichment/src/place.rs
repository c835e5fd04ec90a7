//! Place context — the nearest populated place from GeoNames' cities1000 (144,563 places with
//! population ≥ 1,000, as the `reverse_geocoder` crate ships them). The search runs on a k-d tree
//! of unit-sphere (3-D) coordinates, where chord length grows with great-circle distance, so the
//! nearest point in the tree is the nearest place on the sphere — right at the poles and across
//! the antimeridian, where Euclidean distance on raw degrees fails. The distance answered is the
//! haversine distance on a sphere of the IUGG mean Earth radius.

use reverse_geocoder::ReverseGeocoder;
use serde::Serialize;

/// The mean Earth radius (IUGG), km.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;
/// The data set, named in every answer's provenance.
pub const SOURCE: &str = "geonames-cities1000";
/// The version of the package carrying it.
pub const VERSION: &str = "reverse_geocoder-4.1.1";

/// Great-circle distance between two points (degrees), km.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// How much to trust "you are in <place>": 1 at the place, ½ at 10 km, → 0 far away.
pub fn confidence(distance_km: f64) -> f64 {
    (1000.0 / (1.0 + distance_km / 10.0)).round() / 1000.0
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Place {
    pub name: String,
    pub country_code: String,
    pub admin1: String,
    pub admin2: String,
    /// GeoNames ids are not in the packaged file: always null (stated, not guessed).
    pub geonameid: Option<u64>,
    pub lat: f64,
    pub lon: f64,
    pub distance_km: f64,
    pub confidence: f64,
}

/// The loaded index.
pub struct Places {
    geocoder: ReverseGeocoder,
}

impl Places {
    /// Parses the packaged file and builds the tree (≈0.3 s in release, a few s in debug).
    pub fn load() -> Places {
        Places { geocoder: ReverseGeocoder::new() }
    }

    /// The nearest place to a valid coordinate (lat in [-90, 90], lon in [-180, 180]).
    pub fn nearest(&self, lat: f64, lon: f64) -> Place {
        let r = self.geocoder.search((lat, lon)).record;
        let d = haversine_km(lat, lon, r.lat, r.lon);
        Place {
            name: r.name.clone(),
            country_code: r.cc.clone(),
            admin1: r.admin1.clone(),
            admin2: r.admin2.clone(),
            geonameid: None,
            lat: r.lat,
            lon: r.lon,
            distance_km: (d * 1000.0).round() / 1000.0,
            confidence: confidence(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_known_distances() {
        // (a, b, km, tolerance)
        let cases = [
            ((48.8566, 2.3522), (51.5074, -0.1278), 343.5, 1.0), // Paris - London
            ((0.0, 179.9), (0.0, -179.9), 22.24, 0.01),          // across the antimeridian
            ((89.9, 0.0), (89.9, 180.0), 22.24, 0.01),           // over the pole
            ((10.0, 10.0), (10.0, 10.0), 0.0, 1e-9),
            ((0.0, 0.0), (0.0, 180.0), std::f64::consts::PI * EARTH_RADIUS_KM, 1e-6),
        ];
        for ((a1, o1), (a2, o2), want, tol) in cases {
            let got = haversine_km(a1, o1, a2, o2);
            assert!((got - want).abs() <= tol, "({a1},{o1})-({a2},{o2}): {got} vs {want}");
        }
        assert_eq!(confidence(0.0), 1.0);
        assert_eq!(confidence(10.0), 0.5);
    }

    #[test]
    fn well_known_points_find_their_city_and_the_antimeridian_is_no_edge() {
        let places = Places::load();
        // (lat, lon, expected name, country)
        let cases = [
            (48.8566, 2.3522, "Paris", "FR"),
            (35.6895, 139.6917, "Tokyo", "JP"),
            (40.7128, -74.0060, "New York City", "US"),
            (-18.1248, 178.4501, "Suva", "FJ"),
        ];
        for (lat, lon, name, cc) in cases {
            let p = places.nearest(lat, lon);
            assert_eq!((p.name.as_str(), p.country_code.as_str()), (name, cc), "({lat},{lon}): {p:?}");
            assert!(p.distance_km < 5.0 && p.confidence > 0.6, "{p:?}");
        }
        // Just east of 180° off Vanua Levu (Fiji): the nearest place is west of the line, 71 km
        // away (Labasa) — degrees-as-Euclidean would pick one 5° east instead.
        let p = places.nearest(-16.45, -179.95);
        assert_eq!(p.country_code, "FJ", "{p:?}");
        assert!(p.distance_km < 80.0, "{p:?}");
        // The poles: something, at a sane distance, never NaN.
        for lat in [90.0, -90.0] {
            let p = places.nearest(lat, 0.0);
            assert!(p.distance_km.is_finite() && p.distance_km > 100.0, "{p:?}");
        }
    }
}
