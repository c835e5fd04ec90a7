//! Tenant places and geofences (`POST /places`): a point with a radius, or a GeoJSON Polygon /
//! MultiPolygon (RFC 7946: `[lon, lat]` positions, rings closed; a shape crossing the
//! antimeridian is given as a MultiPolygon split at ±180, as RFC 7946 §3.1.9 asks). Pure.
//!
//! A hit wins over the nearest GeoNames city. Among several hits the most specific wins: the
//! smallest area (geodesic, m²), then the id. A fence with a `tenant` applies only to events
//! whose tenant (the `/tenant` pointer) is that tenant; one without applies to all events.
//! Containment: a circle holds the points within its radius (haversine); a polygon holds its
//! interior and boundary (`geo`'s `Intersects`), with holes excluded. Candidates are found by
//! bounding box first, so a lookup costs one box test per fence plus exact tests of the few
//! whose box holds the point.

use geo::orient::{Direction, Orient};
use geo::{BoundingRect, GeodesicArea, Intersects};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Places per cluster.
pub const MAX_PLACES: usize = 10_000;
/// Vertices per polygon place.
pub const MAX_VERTICES: usize = 100_000;
/// Largest circle radius, m.
pub const MAX_RADIUS_M: f64 = 1_000_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

/// A place as stored and as the API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "office", "name": "Head office", "point": {"lat": 48.1374, "lon": 11.5755}, "radius_m": 150}))]
pub struct PlaceSpec {
    /// 1-128 characters of `[A-Za-z0-9._-]`.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Applies only to events of this tenant; absent: to all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A circle's centre (with `radius_m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<LatLon>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<f64>,
    /// A GeoJSON Polygon or MultiPolygon geometry (or a Feature holding one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub geometry: Option<Value>,
    /// Returned with every hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
}

/// Why a place is refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("place '{place}': {field}: {message}")]
pub struct PlaceError {
    pub place: String,
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug)]
enum Shape {
    Circle { lat: f64, lon: f64, radius_m: f64 },
    Polygon(geo::MultiPolygon<f64>),
}

/// A compiled place.
#[derive(Debug)]
pub struct Fence {
    pub spec: PlaceSpec,
    pub version: i32,
    shape: Shape,
    /// (min lon, min lat, max lon, max lat).
    bbox: (f64, f64, f64, f64),
    pub area_m2: f64,
}

const EARTH_RADIUS_M: f64 = 6_371_008.8;

pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

fn coordinate_ok(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

fn polygon_of(value: &Value) -> Result<geo::MultiPolygon<f64>, String> {
    let geometry = match value.get("type").and_then(Value::as_str) {
        Some("Feature") => value.get("geometry").ok_or("a Feature without a geometry")?,
        _ => value,
    };
    // geo closes rings silently; RFC 7946 requires them closed, so check the text first.
    let rings: Vec<&Value> = match (geometry.get("type").and_then(Value::as_str), geometry.get("coordinates")) {
        (Some("Polygon"), Some(Value::Array(rings))) => rings.iter().collect(),
        (Some("MultiPolygon"), Some(Value::Array(polys))) => {
            polys.iter().filter_map(Value::as_array).flat_map(|p| p.iter()).collect()
        }
        _ => Vec::new(),
    };
    if rings.iter().any(|r| r.as_array().is_some_and(|r| r.len() >= 2 && r.first() != r.last())) {
        return Err("a ring must be closed: its last position equal to its first".into());
    }
    let g: geojson::Geometry = serde_json::from_value(geometry.clone()).map_err(|e| e.to_string())?;
    let shape: geo::Geometry<f64> = g.try_into().map_err(|e: geojson::Error| e.to_string())?;
    let mp = match shape {
        geo::Geometry::Polygon(p) => geo::MultiPolygon(vec![p]),
        geo::Geometry::MultiPolygon(mp) => mp,
        other => return Err(format!("a {} is not an area; give a Polygon or MultiPolygon", kind_of(&other))),
    };
    // Exterior counter-clockwise, holes clockwise (what the geodesic area assumes); RFC 7946
    // asks parsers not to reject the other winding.
    let mp = mp.orient(Direction::Default);
    let mut vertices = 0;
    for p in &mp.0 {
        for ring in std::iter::once(p.exterior()).chain(p.interiors()) {
            let n = ring.0.len();
            vertices += n;
            if n < 4 {
                return Err("a ring needs at least 4 positions (the first repeated last)".into());
            }
            if ring.0.first() != ring.0.last() {
                return Err("a ring must be closed: its last position equal to its first".into());
            }
            if let Some(c) = ring.0.iter().find(|c| !coordinate_ok(c.y, c.x)) {
                return Err(format!("position [{}, {}] is outside [-180, 180] × [-90, 90]", c.x, c.y));
            }
        }
    }
    if mp.0.is_empty() {
        return Err("an empty MultiPolygon".into());
    }
    if vertices > MAX_VERTICES {
        return Err(format!("at most {MAX_VERTICES} positions per place"));
    }
    Ok(mp)
}

fn kind_of(g: &geo::Geometry<f64>) -> &'static str {
    match g {
        geo::Geometry::Point(_) => "Point",
        geo::Geometry::Line(_) | geo::Geometry::LineString(_) => "LineString",
        geo::Geometry::MultiPoint(_) => "MultiPoint",
        geo::Geometry::MultiLineString(_) => "MultiLineString",
        geo::Geometry::GeometryCollection(_) => "GeometryCollection",
        _ => "geometry",
    }
}

pub fn compile(spec: &PlaceSpec, version: i32) -> Result<Fence, PlaceError> {
    let err = |field: &'static str, message: String| PlaceError { place: spec.id.clone(), field, message };
    if !crate::rules::id_ok(&spec.id) {
        return Err(err("id", "a place id is 1-128 characters of [A-Za-z0-9._-]".into()));
    }
    if spec.name.as_ref().is_some_and(|n| n.is_empty() || n.len() > 256) {
        return Err(err("name", "1-256 bytes".into()));
    }
    if spec.tenant.as_ref().is_some_and(|t| t.is_empty() || t.len() > 256) {
        return Err(err("tenant", "1-256 bytes".into()));
    }
    if spec.properties.as_ref().is_some_and(|p| serde_json::to_string(p).map_or(0, |s| s.len()) > 16 * 1024) {
        return Err(err("properties", "at most 16 KiB".into()));
    }
    let (shape, bbox, area_m2) = match (&spec.point, spec.radius_m, &spec.geometry) {
        (Some(p), Some(r), None) => {
            if !coordinate_ok(p.lat, p.lon) {
                return Err(err("point", "lat in [-90, 90], lon in [-180, 180]".into()));
            }
            if !(r.is_finite() && r > 0.0 && r <= MAX_RADIUS_M) {
                return Err(err("radius_m", format!("a radius in (0, {MAX_RADIUS_M}] m")));
            }
            let dlat = (r / EARTH_RADIUS_M).to_degrees();
            let cos = p.lat.to_radians().cos();
            // Near a pole or across the antimeridian the box spans every longitude.
            let (lo, hi) = if p.lat.abs() + dlat >= 89.0 || cos < 1e-6 {
                (-180.0, 180.0)
            } else {
                let dlon = dlat / cos;
                if p.lon - dlon < -180.0 || p.lon + dlon > 180.0 {
                    (-180.0, 180.0)
                } else {
                    (p.lon - dlon, p.lon + dlon)
                }
            };
            let bbox = (lo, (p.lat - dlat).max(-90.0), hi, (p.lat + dlat).min(90.0));
            (Shape::Circle { lat: p.lat, lon: p.lon, radius_m: r }, bbox, std::f64::consts::PI * r * r)
        }
        (None, None, Some(g)) => {
            let mp = polygon_of(g).map_err(|m| err("geometry", m))?;
            let rect = mp.bounding_rect().ok_or_else(|| err("geometry", "an empty geometry".into()))?;
            let area = mp.geodesic_area_unsigned();
            let bbox = (rect.min().x, rect.min().y, rect.max().x, rect.max().y);
            (Shape::Polygon(mp), bbox, area)
        }
        (Some(_), None, None) => return Err(err("radius_m", "a point place needs radius_m".into())),
        (None, Some(_), None) => return Err(err("point", "radius_m needs a point".into())),
        (None, None, None) => return Err(err("geometry", "give a point with radius_m, or a geometry".into())),
        _ => return Err(err("geometry", "give a point with radius_m, or a geometry, not both".into())),
    };
    Ok(Fence { spec: spec.clone(), version, shape, bbox, area_m2 })
}

impl Fence {
    fn applies_to(&self, tenant: Option<&str>) -> bool {
        self.spec.tenant.as_deref().is_none_or(|t| Some(t) == tenant)
    }

    fn in_box(&self, lat: f64, lon: f64) -> bool {
        let (x0, y0, x1, y1) = self.bbox;
        (x0..=x1).contains(&lon) && (y0..=y1).contains(&lat)
    }

    /// Whether the point is inside; for a circle, also the distance to its centre (m).
    pub fn contains(&self, lat: f64, lon: f64) -> Option<f64> {
        if !self.in_box(lat, lon) {
            return None;
        }
        match &self.shape {
            Shape::Circle { lat: clat, lon: clon, radius_m } => {
                let d = haversine_m(lat, lon, *clat, *clon);
                (d <= *radius_m).then_some(d)
            }
            Shape::Polygon(mp) => mp.intersects(&geo::Point::new(lon, lat)).then_some(0.0),
        }
    }
}

/// The fences holding a point for a tenant, most specific first: (fence, distance to centre m).
pub fn hits<'a>(
    fences: &'a [std::sync::Arc<Fence>],
    lat: f64,
    lon: f64,
    tenant: Option<&str>,
) -> Vec<(&'a Fence, f64)> {
    let mut out: Vec<(&Fence, f64)> = fences
        .iter()
        .filter(|f| f.applies_to(tenant))
        .filter_map(|f| f.contains(lat, lon).map(|d| (f.as_ref(), d)))
        .collect();
    out.sort_by(|a, b| a.0.area_m2.total_cmp(&b.0.area_m2).then_with(|| a.0.spec.id.cmp(&b.0.spec.id)));
    out
}

/// The place group when a fence wins: the fence, with the nearest city's country and
/// subdivision kept (holidays and weekends follow them) and the city itself under `nearest`.
pub fn place_group(hits: &[(&Fence, f64)], city: Option<&Value>) -> Option<Value> {
    let (fence, distance_m) = hits.first()?;
    let pick = |k: &str| city.and_then(|c| c.get(k)).cloned().unwrap_or(Value::Null);
    let nearest = city.map(|c| {
        json!({"name": c["name"], "geonameid": c["geonameid"], "distance_km": c["distance_km"],
               "provenance": c["provenance"]})
    });
    Some(json!({
        "name": fence.spec.name.clone().unwrap_or_else(|| fence.spec.id.clone()),
        "geofence": fence.spec.id,
        "geofences": hits.iter().map(|(f, _)| f.spec.id.as_str()).collect::<Vec<_>>(),
        "country_code": pick("country_code"),
        "admin1": pick("admin1"),
        "geonameid": null,
        "distance_km": distance_m.round() / 1000.0,
        "confidence": 1.0,
        "properties": fence.spec.properties,
        "nearest": nearest,
        "provenance": {"source": "places", "version": fence.version, "confidence": 1.0},
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn spec(v: Value) -> PlaceSpec {
        serde_json::from_value(v).unwrap()
    }

    fn fence(v: Value) -> Arc<Fence> {
        Arc::new(compile(&spec(v), 1).unwrap())
    }

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Value {
        json!({"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]})
    }

    #[test]
    fn bad_places_name_the_field() {
        let cases = [
            (json!({"id": "a", "point": {"lat": 91, "lon": 0}, "radius_m": 10}), "point"),
            (json!({"id": "a", "point": {"lat": 1, "lon": 0}, "radius_m": 0}), "radius_m"),
            (json!({"id": "a", "point": {"lat": 1, "lon": 0}, "radius_m": 2e6}), "radius_m"),
            (json!({"id": "a", "point": {"lat": 1, "lon": 0}}), "radius_m"),
            (json!({"id": "a", "radius_m": 5}), "point"),
            (json!({"id": "a"}), "geometry"),
            (
                json!({"id": "a", "point": {"lat": 1, "lon": 0}, "radius_m": 5, "geometry": square(0., 0., 1., 1.)}),
                "geometry",
            ),
            (json!({"id": "a", "geometry": {"type": "Point", "coordinates": [1, 2]}}), "geometry"),
            (
                json!({"id": "a", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}),
                "geometry",
            ),
            (
                json!({"id": "a", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}}),
                "geometry",
            ),
            (json!({"id": "a", "geometry": square(0., 0., 181., 1.)}), "geometry"),
            (json!({"id": "a", "geometry": {"type": "Polygon", "coordinates": "x"}}), "geometry"),
            (json!({"id": "a b", "point": {"lat": 1, "lon": 0}, "radius_m": 5}), "id"),
        ];
        for (v, field) in cases {
            let e = compile(&spec(v.clone()), 0).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e}");
        }
    }

    #[test]
    fn containment_circles_polygons_holes_and_tenants() {
        let fences = vec![
            fence(json!({"id": "office", "point": {"lat": 48.1374, "lon": 11.5755}, "radius_m": 150})),
            fence(json!({"id": "campus", "geometry": square(11.57, 48.13, 11.58, 48.14)})),
            fence(json!({"id": "ring", "geometry": {"type": "Polygon", "coordinates": [
                [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0], [0.0, 0.0]],
                [[1.0, 1.0], [3.0, 1.0], [3.0, 3.0], [1.0, 3.0], [1.0, 1.0]]]}})),
            fence(json!({"id": "acme-only", "tenant": "acme", "geometry": square(0.0, 0.0, 0.5, 0.5)})),
            fence(json!({"id": "dateline", "geometry": {"type": "MultiPolygon", "coordinates": [
                [[[179.0, -1.0], [180.0, -1.0], [180.0, 1.0], [179.0, 1.0], [179.0, -1.0]]],
                [[[-180.0, -1.0], [-179.0, -1.0], [-179.0, 1.0], [-180.0, 1.0], [-180.0, -1.0]]]]}})),
            fence(json!({"id": "pole", "point": {"lat": 89.9, "lon": 0.0}, "radius_m": 50_000})),
        ];
        let ids =
            |lat, lon, tenant| hits(&fences, lat, lon, tenant).iter().map(|h| h.0.spec.id.clone()).collect::<Vec<_>>();
        let cases: [(f64, f64, Option<&str>, &[&str]); 10] = [
            (48.1374, 11.5755, None, &["office", "campus"]),
            (48.1395, 11.5755, None, &["campus"]),
            (48.2, 11.5755, None, &[]),
            (0.5, 0.5, None, &["ring"]),
            (2.0, 2.0, None, &[]),
            (0.25, 0.25, Some("acme"), &["acme-only", "ring"]),
            (0.25, 0.25, Some("other"), &["ring"]),
            (0.0, 179.5, None, &["dateline"]),
            (0.0, -179.5, None, &["dateline"]),
            (89.9, 179.0, None, &["pole"]),
        ];
        for (lat, lon, tenant, want) in cases {
            assert_eq!(ids(lat, lon, tenant), want, "({lat}, {lon}) {tenant:?}");
        }
        // A point on a polygon's boundary is inside.
        assert_eq!(ids(0.0, 2.0, None), ["ring"]);
    }

    #[test]
    fn a_hit_keeps_the_city_country() {
        let fences =
            vec![fence(json!({"id": "office", "name": "HQ", "point": {"lat": 1.0, "lon": 1.0}, "radius_m": 100}))];
        let city = json!({"name": "Town", "country_code": "DE", "admin1": "Bavaria", "geonameid": 5, "distance_km": 2.0, "provenance": {}});
        let g = place_group(&hits(&fences, 1.0, 1.0, None), Some(&city)).unwrap();
        assert_eq!(
            (g["name"].as_str(), g["geofence"].as_str(), g["country_code"].as_str()),
            (Some("HQ"), Some("office"), Some("DE"))
        );
        assert_eq!(g["nearest"]["name"], "Town");
        assert!(place_group(&hits(&fences, 5.0, 5.0, None), Some(&city)).is_none());
    }
}
