//! Distances on the Earth's surface.

/// The Earth's mean radius, metres (IUGG).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres between two points given in degrees,
/// by the haversine formula.
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        assert_eq!(haversine_m(52.5, 13.4, 52.5, 13.4), 0.0);
        // One degree of latitude is about 111.2 km on this sphere.
        let d = haversine_m(0.0, 0.0, 1.0, 0.0);
        assert!((d - 111_195.08).abs() < 0.1, "{d}");
        // Berlin to Paris, about 878 km.
        let d = haversine_m(52.5200, 13.4050, 48.8566, 2.3522);
        assert!((d - 877_500.0).abs() < 1_500.0, "{d}");
        // Symmetric.
        assert_eq!(
            haversine_m(1.0, 2.0, 3.0, 4.0),
            haversine_m(3.0, 4.0, 1.0, 2.0)
        );
    }
}
