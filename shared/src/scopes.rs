//! A client's set of permissions, as both services keep them: parsed from `a,b` (each name
//! once, sorted), shown the same way. The names are each service's own ([`ScopeName`]).

use std::fmt;

/// A service's permission enum.
pub trait ScopeName: Copy + Ord + 'static {
    /// Every scope, for parsing.
    const EVERY: &'static [Self];
    /// The error for a name not in [`ScopeName::EVERY`]: fixed text listing the names, never
    /// the input.
    const UNKNOWN: &'static str;
    /// The name, e.g. `tokens:create`.
    fn as_str(self) -> &'static str;
}

/// A set of scopes.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ScopeSet<S>(Vec<S>);

impl<S: ScopeName> ScopeSet<S> {
    /// Parses `a,b` (spaces around names are ignored, repeats kept once).
    ///
    /// # Errors
    ///
    /// An empty list or an unknown name (fixed messages).
    pub fn parse(list: &str) -> Result<Self, &'static str> {
        let mut scopes = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let scope = S::EVERY
                .iter()
                .copied()
                .find(|s| s.as_str() == name)
                .ok_or(S::UNKNOWN)?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("at least one scope is required");
        }
        scopes.sort();
        Ok(Self(scopes))
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: S) -> bool {
        self.0.contains(&scope)
    }
}

impl<S: ScopeName> fmt::Display for ScopeSet<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&names.join(","))
    }
}
