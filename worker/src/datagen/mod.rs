//! Generated datasets with a known truth, so every data job can be run and
//! measured here: `drover datagen annotations` ([`annotations`]), `texts`
//! ([`texts`]) and `sensors` ([`sensors`]).
//! Everything is a function of the seed ([`rng`]): one seed, one dataset,
//! byte for byte.

pub mod annotations;
pub mod rng;
pub mod sensors;
pub mod texts;

/// Version of the generators; part of every generated manifest, so data
/// from a changed generator is not mistaken for the old.
pub const GENERATOR_VERSION: &str = concat!("drover-datagen ", env!("CARGO_PKG_VERSION"));

/// Who wrote a generated dataset, for its manifests: the generator, its
/// version, and the parameters as the input fingerprint.
fn writer(generator: &str, parameters: String) -> crate::dataset::manifest::Writer {
    crate::dataset::manifest::Writer {
        task: format!("datagen {generator}"),
        code_version: GENERATOR_VERSION.to_owned(),
        input_fingerprint: parameters,
        ..Default::default()
    }
}
