//! Cron fire times: named cases on real transitions, and two oracles over
//! generated ones.

mod cases;
mod model;
mod oracle;
mod transitions;
