//! The OTLP profiles signal (`v1development`) for the receivers in `otlp`, gRPC and
//! HTTP/protobuf: the trace receivers' admission and decoding, with a backend's conformance
//! check on top, so a profile whose indices do not resolve is refused, not stored half-readable.

use opentelemetry_proto::tonic::collector::profiles::v1development::profiles_service_server::{
    ProfilesService, ProfilesServiceServer,
};
use opentelemetry_proto::tonic::collector::profiles::v1development::{
    ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};

use super::behaviour::Refusal;
use super::http::MAX_BODY_BYTES;
use super::otlp::{Signal, export_grpc};
use super::receiver::ReceiverState;
use super::{Capture, Endpoint, RequestHeaders, Transport, otlp_profile};

/// `opentelemetry.proto.collector.profiles.v1development.ProfilesService`, served beside the
/// trace service on the OTLP/gRPC port as a Collector does.
pub(super) fn grpc_service(state: ReceiverState) -> ProfilesServiceServer<GrpcProfiles> {
    ProfilesServiceServer::new(GrpcProfiles { state }).max_decoding_message_size(MAX_BODY_BYTES)
}

pub(super) struct GrpcProfiles {
    state: ReceiverState,
}

#[tonic::async_trait]
impl ProfilesService for GrpcProfiles {
    async fn export(
        &self,
        request: tonic::Request<ExportProfilesServiceRequest>,
    ) -> Result<tonic::Response<ExportProfilesServiceResponse>, tonic::Status> {
        export_grpc::<Profiles>(&self.state, request).await
    }
}

/// Profiles: kept only when they pass the conformance check; otherwise a client error, 400
/// (`InvalidArgument` on gRPC), whose reason names the problem.
pub(super) struct Profiles;

impl Signal for Profiles {
    type Request = ExportProfilesServiceRequest;
    type Response = ExportProfilesServiceResponse;

    fn endpoint(transport: Transport) -> Endpoint {
        match transport {
            Transport::Grpc => Endpoint::OtlpProfilesGrpc,
            Transport::Http => Endpoint::OtlpProfilesHttp,
        }
    }

    fn store(
        capture: &Capture,
        transport: Transport,
        headers: RequestHeaders,
        request: ExportProfilesServiceRequest,
    ) -> Result<(), Refusal> {
        let profiles = otlp_profile::flatten(request, transport, &headers)
            .map_err(|reason| Refusal::new(400, reason))?;
        capture.record_otlp_profiles(Self::endpoint(transport), profiles);
        Ok(())
    }
}
