//! Full syncs, the operations: a begin and its parts are checked and staged ([`stage`]); the
//! commit applies the sync whole ([`commit`]). The state they work on, and the requests and
//! answers, are in [`crate::sync`].

mod commit;
mod stage;

#[cfg(test)]
mod whole_tests;
