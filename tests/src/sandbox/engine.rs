//! The bank API methods, called once the request is authenticated and its body is a JSON
//! object.

use serde_json::{Value, json};

use crate::sandbox::Sandbox;
use crate::sandbox::config::ApiVersion;
use crate::sandbox::error::ApiError;
use crate::sandbox::keep::StateGuard;
use crate::sandbox::lifecycle::{self, Effects};
use crate::sandbox::model::{Fields, Phase, Session};
use crate::sandbox::quirks::{Channel, Quirks};
use crate::sandbox::request;

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The whole envelope, `{"status":"ok",...}`.
    pub(crate) body: Value,
    /// The session is a `SLOW_BANK` one: answer late.
    pub(crate) slow: bool,
}

impl Reply {
    fn session(s: &Session, version: ApiVersion, quirks: Quirks) -> Self {
        let mut session = s.render(version);
        quirks.apply(&mut session, Channel::Answer);
        Self {
            body: json!({"status": "ok", "session": session}),
            slow: s.slow,
        }
    }
}

impl Sandbox {
    /// Dispatches an authenticated call to `method` (the path without its version prefix).
    pub(crate) fn call(
        &self,
        method: &str,
        project: &str,
        version: ApiVersion,
        body: &Value,
    ) -> Result<Reply, ApiError> {
        match method {
            "session/create" => self.create(project, version, body),
            "session/init/payout" => self.init_payout(project, version, body),
            "session/start/payout" => self.start_payout(project, version, body),
            "session/confirm" => self.decide(project, version, body, lifecycle::confirm),
            "session/cancel" => self.decide(project, version, body, lifecycle::cancel),
            "session/status" => self.status(project, version, body),
            "wallet/balance" => self.balance(project, body),
            _ => Err(ApiError::new("not_found", "no such method")),
        }
    }

    fn create(&self, project: &str, version: ApiVersion, body: &Value) -> Result<Reply, ApiError> {
        let fields = request::fields(project, version, body)?;
        let mut state = self.state.lock();
        let id = state.session_id();
        let session = Session::new(id.clone(), project, fields);
        let reply = Reply::session(&session, version, state.quirks(project));
        state.sessions.insert(id, session);
        Ok(reply)
    }

    fn init_payout(
        &self,
        project: &str,
        version: ApiVersion,
        body: &Value,
    ) -> Result<Reply, ApiError> {
        let fields = request::fields(project, version, body)?;
        request::require_payout(&fields)?;
        let mut state = self.state.lock();
        let id = state.session_id();
        state.sessions.insert(
            id.clone(),
            Session::new(id.clone(), project, Fields::default()),
        );
        self.begin(state, project, &id, version, fields, true)
    }

    fn start_payout(
        &self,
        project: &str,
        version: ApiVersion,
        body: &Value,
    ) -> Result<Reply, ApiError> {
        let id = request::session_id(body)?;
        let fields = request::fields(project, version, body)?;
        let mut state = self.state.lock();
        let session = state.session_mut(project, &id)?;
        if session.phase != Phase::Created {
            return Err(ApiError::wrong_state());
        }
        let merged = session.fields.merged(fields);
        request::require_payout(&merged)?;
        self.begin(state, project, &id, version, merged, false)
    }

    /// Starts the payout of session `id` with its checked fields (`via_init` for
    /// `session/init/payout`), then answers.
    fn begin(
        &self,
        mut state: StateGuard<'_>,
        project: &str,
        id: &str,
        version: ApiVersion,
        fields: Fields,
        via_init: bool,
    ) -> Result<Reply, ApiError> {
        let fx = lifecycle::begin_payout(&mut state, self.delays(), id, fields, via_init)?;
        self.reply_and_run(state, project, id, version, fx)
    }

    /// confirm and cancel: the same shape, a different transition.
    fn decide(
        &self,
        project: &str,
        version: ApiVersion,
        body: &Value,
        transition: fn(&mut Session, lifecycle::Delays) -> Result<Effects, ApiError>,
    ) -> Result<Reply, ApiError> {
        let id = request::session_id(body)?;
        let delays = self.delays();
        let mut state = self.state.lock();
        let session = state.session_mut(project, &id)?;
        let fx = transition(session, delays)?;
        self.reply_and_run(state, project, &id, version, fx)
    }

    fn status(&self, project: &str, version: ApiVersion, body: &Value) -> Result<Reply, ApiError> {
        let id = request::session_id(body)?;
        let mut state = self.state.lock();
        let quirks = state.quirks(project);
        let session = state.session_mut(project, &id)?;
        Ok(Reply::session(session, version, quirks))
    }

    /// `wallet/balance`: `request_datetime` is mandatory (SG7), its format is not checked.
    fn balance(&self, project: &str, body: &Value) -> Result<Reply, ApiError> {
        if body
            .get("request_datetime")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::invalid("request_datetime is required"));
        }
        let state = self.state.lock();
        let p = state.projects.get(project).ok_or(ApiError::internal())?;
        let body = json!({"status": "ok", "wallets": [{
            "id": "131",
            "amount_details": {"amount": p.config.wallet_balance, "currency": "rub"},
        }]});
        Ok(Reply { body, slow: false })
    }

    /// Renders the session, releases the lock, then carries out the effects (so a webhook is
    /// never built while the lock is held).
    fn reply_and_run(
        &self,
        mut state: StateGuard<'_>,
        project: &str,
        id: &str,
        version: ApiVersion,
        fx: Effects,
    ) -> Result<Reply, ApiError> {
        let quirks = state.quirks(project);
        let session = state.session_mut(project, id)?;
        let reply = Reply::session(session, version, quirks);
        // Dropping the guard writes the state file (with `--state-dir`): before the answer.
        drop(state);
        self.run(fx);
        Ok(reply)
    }
}
