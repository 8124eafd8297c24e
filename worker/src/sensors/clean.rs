//! Cleaning one device's readings, in this order:
//!
//! 1. a reading with a position off the globe, or less accurate than the
//!    threshold (`accuracy_m` above it), is dropped;
//! 2. of readings with one timestamp, the first in [`Reading::order`] is
//!    kept (a feed that sends a reading twice sends it identically);
//! 3. a reading is an outlier, and dropped, when the speed implied by the
//!    distance from the previous reading and the speed implied to the next
//!    both exceed the threshold; at the device's first or last reading,
//!    the one speed there is decides, and a lone reading stays. A single
//!    teleport is so dropped while the readings either side of it, close
//!    to each other, both stay.
//!
//! Neighbours in step 3 are those left by steps 1 and 2, so the rule is
//! the same whatever order the readings came in, and a reference can
//! compute it with window functions.

use super::geo::haversine_m;

/// One reading of one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// UTC milliseconds.
    pub ts: i64,
    /// Degrees.
    pub lat: f64,
    /// Degrees.
    pub lon: f64,
    /// Metres.
    pub accuracy_m: f32,
    /// Metres per second, as the device reported it.
    pub speed_mps: f32,
    /// 0 GPS, 1 Wi-Fi, 2 cell.
    pub source: u8,
    /// Signal strength, dBm.
    pub rssi_dbm: i32,
}

impl Reading {
    /// A total order: by time, then by every other field, so the reading
    /// kept of two with one timestamp does not depend on input order.
    pub fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.ts
            .cmp(&other.ts)
            .then(self.lat.total_cmp(&other.lat))
            .then(self.lon.total_cmp(&other.lon))
            .then(self.accuracy_m.total_cmp(&other.accuracy_m))
            .then(self.speed_mps.total_cmp(&other.speed_mps))
            .then(self.source.cmp(&other.source))
            .then(self.rssi_dbm.cmp(&other.rssi_dbm))
    }
}

/// Cleaning thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Readings less accurate than this many metres are dropped.
    pub max_accuracy_m: f64,
    /// Implied speeds above this (m/s) mark a jump.
    pub max_speed_mps: f64,
}

/// What cleaning dropped, by rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Off the globe or not accurate enough.
    pub inaccurate: u64,
    /// Second and later readings of one timestamp.
    pub duplicates: u64,
    /// Implausible jumps.
    pub outliers: u64,
}

impl Dropped {
    /// Adds another's counts.
    pub fn add(&mut self, o: &Dropped) {
        self.inaccurate += o.inaccurate;
        self.duplicates += o.duplicates;
        self.outliers += o.outliers;
    }
}

/// Cleans one device's readings in place (any order in; time order out)
/// and counts what went.
pub fn clean(readings: &mut Vec<Reading>, t: &Thresholds, dropped: &mut Dropped) {
    let before = readings.len();
    readings.retain(|r| {
        r.lat.is_finite()
            && r.lon.is_finite()
            && (-90.0..=90.0).contains(&r.lat)
            && (-180.0..=180.0).contains(&r.lon)
            && f64::from(r.accuracy_m) <= t.max_accuracy_m
    });
    dropped.inaccurate += (before - readings.len()) as u64;

    readings.sort_unstable_by(Reading::order);
    let before = readings.len();
    readings.dedup_by(|later, earlier| later.ts == earlier.ts);
    dropped.duplicates += (before - readings.len()) as u64;

    let n = readings.len();
    if n < 2 {
        return;
    }
    // Implied speed from each reading to the next.
    let jump: Vec<bool> = readings
        .windows(2)
        .map(|w| {
            let metres = haversine_m(w[0].lat, w[0].lon, w[1].lat, w[1].lon);
            let seconds = (w[1].ts - w[0].ts) as f64 / 1000.0;
            metres / seconds > t.max_speed_mps
        })
        .collect();
    let mut i = 0;
    readings.retain(|_| {
        let from_prev = i == 0 || jump[i - 1];
        let to_next = i == n - 1 || jump[i];
        i += 1;
        !(from_prev && to_next)
    });
    dropped.outliers += (n - readings.len()) as u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        max_accuracy_m: 100.0,
        max_speed_mps: 70.0,
    };

    /// A reading `north_m` metres north of a point, at second `s`.
    fn at(s: i64, north_m: f64) -> Reading {
        Reading {
            ts: s * 1000,
            lat: 52.5 + north_m / 111_195.08,
            lon: 13.4,
            accuracy_m: 10.0,
            speed_mps: 1.0,
            source: 0,
            rssi_dbm: -120,
        }
    }

    fn cleaned(mut rs: Vec<Reading>) -> (Vec<i64>, Dropped) {
        let mut d = Dropped::default();
        clean(&mut rs, &T, &mut d);
        (rs.iter().map(|r| r.ts / 1000).collect(), d)
    }

    #[test]
    fn a_teleport_goes_and_its_neighbours_stay() {
        // Walking north at 10 m/s, with a fix 50 km off at second 3.
        let mut rs: Vec<Reading> = (0..6).map(|s| at(s, s as f64 * 10.0)).collect();
        rs[3].lat += 0.45;
        let (kept, d) = cleaned(rs);
        assert_eq!(kept, [0, 1, 2, 4, 5]);
        assert_eq!(d.outliers, 1);
    }

    #[test]
    fn a_teleport_at_either_end_goes() {
        let mut rs: Vec<Reading> = (0..4).map(|s| at(s, 0.0)).collect();
        rs[0].lat += 0.45;
        rs[3].lon += 0.7;
        assert_eq!(cleaned(rs).0, [1, 2]);
        // A lone reading stays; two far apart go together.
        assert_eq!(cleaned(vec![at(0, 0.0)]).0, [0]);
        assert_eq!(
            cleaned(vec![at(0, 0.0), at(1, 90_000.0)]).0,
            Vec::<i64>::new()
        );
    }

    #[test]
    fn fast_but_plausible_movement_stays() {
        // 60 m/s, under the 70 m/s threshold.
        let rs: Vec<Reading> = (0..5).map(|s| at(s, s as f64 * 60.0)).collect();
        assert_eq!(cleaned(rs).0, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn inaccurate_and_duplicate_readings_go_whatever_the_order() {
        let mut coarse = at(2, 20.0);
        coarse.accuracy_m = 100.5;
        let mut off_globe = at(3, 0.0);
        off_globe.lat = f64::NAN;
        let mut twin = at(1, 10.0);
        twin.rssi_dbm = -121;
        let rs = vec![
            at(4, 40.0),
            twin,
            at(1, 10.0),
            coarse,
            at(0, 0.0),
            off_globe,
            at(1, 10.0),
        ];
        let (kept, d) = cleaned(rs.clone());
        assert_eq!(kept, [0, 1, 4]);
        assert_eq!(
            d,
            Dropped {
                inaccurate: 2,
                duplicates: 2,
                outliers: 0
            }
        );
        // The twin kept is the same one in any input order.
        let mut reversed = rs;
        reversed.reverse();
        let mut a = vec![at(1, 10.0), twin];
        let mut b = vec![twin, at(1, 10.0)];
        clean(&mut a, &T, &mut Dropped::default());
        clean(&mut b, &T, &mut Dropped::default());
        assert_eq!(a, b);
        assert_eq!(cleaned(reversed).0, [0, 1, 4]);
    }
}
