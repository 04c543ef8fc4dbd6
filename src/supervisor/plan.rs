//! What a reload changes: the difference between the workers running and the workers the
//! files now define, as a list of actions. Pure, so every case is a unit test.

use std::collections::BTreeMap;

use crate::config::WorkerDef;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A new worker file.
    Start(WorkerDef),
    /// Its file was deleted.
    Stop(String),
    /// Only `replicas` changed: replicas that stay are not touched.
    Scale(WorkerDef),
    /// Anything else changed: every replica restarts on the new definition.
    Restart(WorkerDef),
}

/// The actions that turn `running` into `wanted`. Workers whose file is currently invalid
/// are absent from `wanted` but listed in `invalid`: they keep running as they are.
/// `replicas_changed` says a setting every replica reads (the broker, the store, logging)
/// changed: then every worker that stays restarts.
pub fn plan(
    running: &BTreeMap<String, WorkerDef>,
    wanted: &BTreeMap<String, WorkerDef>,
    invalid: &[String],
    replicas_changed: bool,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (name, old) in running {
        match wanted.get(name) {
            None if invalid.contains(name) => {}
            None => actions.push(Action::Stop(name.clone())),
            Some(new) if replicas_changed => actions.push(Action::Restart(new.clone())),
            Some(new) if same(old, new, old.replicas) => {}
            Some(new) if same(old, new, new.replicas) => actions.push(Action::Scale(new.clone())),
            Some(new) => actions.push(Action::Restart(new.clone())),
        }
    }
    for (name, new) in wanted {
        if !running.contains_key(name) {
            actions.push(Action::Start(new.clone()));
        }
    }
    actions
}

/// Whether `new` defines what `old` does with `replicas` replicas. Definitions are compared
/// as validated, not as written: an edited comment changes nothing.
fn same(old: &WorkerDef, new: &WorkerDef, replicas: u32) -> bool {
    let mut old = old.clone();
    old.replicas = replicas;
    &old == new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, queue: &str, replicas: u32) -> WorkerDef {
        WorkerDef {
            replicas,
            ..WorkerDef::example(name, queue)
        }
    }

    fn map(defs: &[WorkerDef]) -> BTreeMap<String, WorkerDef> {
        defs.iter().map(|d| (d.name.clone(), d.clone())).collect()
    }

    #[test]
    fn new_deleted_scaled_and_changed_workers() {
        let running = map(&[def("a", "qa", 1), def("b", "qb", 3), def("c", "qc", 1)]);
        let wanted = map(&[
            def("a", "qa", 1),
            def("b", "qb", 1),
            def("c", "other", 1),
            def("d", "qd", 2),
        ]);
        let actions = plan(&running, &wanted, &[], false);
        assert_eq!(
            actions,
            [
                Action::Scale(def("b", "qb", 1)),
                Action::Restart(def("c", "other", 1)),
                Action::Start(def("d", "qd", 2)),
            ]
        );
    }

    #[test]
    fn an_invalid_file_keeps_its_worker_running() {
        let running = map(&[def("a", "qa", 1), def("b", "qb", 1)]);
        let wanted = map(&[def("a", "qa", 1)]);
        assert!(plan(&running, &wanted, &["b".to_string()], false).is_empty());
        assert_eq!(
            plan(&running, &wanted, &[], false),
            [Action::Stop("b".into())]
        );
    }

    #[test]
    fn a_changed_broker_or_store_restarts_every_worker_that_stays() {
        let running = map(&[def("a", "qa", 1), def("b", "qb", 1)]);
        let wanted = map(&[def("a", "qa", 1)]);
        assert_eq!(
            plan(&running, &wanted, &[], true),
            [Action::Restart(def("a", "qa", 1)), Action::Stop("b".into())]
        );
    }
}
